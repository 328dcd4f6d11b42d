-- An audit log written by replbot before its stores read rows by name (commit a0b6cbe),
-- keyed with FIXTURE_KEY of tests/unit/test_rows_by_name.py; its head is rows=4 hash=07178dd7...
-- Its hashes must keep verifying: the chain is computed over the columns in a fixed order.
BEGIN TRANSACTION;
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    user_id     INTEGER,
    user_name   TEXT    NOT NULL,
    chat_id     INTEGER,
    command     TEXT    NOT NULL,
    args        TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    duration_ms INTEGER NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
INSERT INTO "audit" VALUES(1,'2026-12-02T03:51:01.215+00:00',1001,'alice',1001,'status','main','ok','',12,'0000000000000000000000000000000000000000000000000000000000000000','97a34d5848bd2c464b21b87ae36e8665ba35b25dd186f6b960df03f57cdc71d1');
INSERT INTO "audit" VALUES(2,'2026-12-02T03:51:01.227+00:00',NULL,'',NULL,'callback','','refused','unknown user',0,'97a34d5848bd2c464b21b87ae36e8665ba35b25dd186f6b960df03f57cdc71d1','add8917722fbc4f1a5514b93371c3faa2b08469ef205af6c1984a1a7bd9c5a07');
INSERT INTO "audit" VALUES(3,'2026-12-02T03:51:01.228+00:00',2002,'Фёдор "ops"',-100123,'rebuild','main pg2 --dry-run','failed','replica''s lag: 5 MB',4321,'add8917722fbc4f1a5514b93371c3faa2b08469ef205af6c1984a1a7bd9c5a07','22cfda9174d40fec0e2832b5a0b5c2bdabb269e1d6088be301b6ebe70e9be631');
INSERT INTO "audit" VALUES(4,'2026-12-02T03:51:01.228+00:00',1001,'alice',1001,'rebuild','main pg2','intent','',7,'22cfda9174d40fec0e2832b5a0b5c2bdabb269e1d6088be301b6ebe70e9be631','07178dd792a0844a4bcc4644a19037dfa962d9a904700cda66e5052539af1f2b');
COMMIT;
