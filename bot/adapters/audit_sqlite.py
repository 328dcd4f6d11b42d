"""SQLite audit log (aiosqlite, WAL mode): append-only rows chained by HMAC-SHA256.

Each row stores the hash of the previous row and its own HMAC over its content, keyed with a
secret that never lives in the database (``REPLBOT_AUDIT_KEY``, ``audit.key_file``, or a key
file created beside the database). An edited, inserted or deleted row breaks the chain and
``verify()`` names the first bad id; someone who can write the file but does not know the key
cannot re-hash the rows after an edit. Triggers refuse UPDATE and DELETE; the chain catches
edits made around them.

Deleting the newest rows leaves a shorter chain that is still valid, so the head (row count
and newest hash) is logged as ``audit head: rows=N hash=H`` on the ``replbot.audit`` logger at
open, every ``anchor_every`` rows and at close; ``verify(expect_head=...)`` compares the chain
with such an anchor kept outside the database.

Rows written by releases before the key (plain SHA-256) are accepted only as a prefix of the
chain: ``verify`` counts them (``unkeyed_rows``) and says so; an unkeyed row after a keyed one
is reported as tampering.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.adapters.sqlite import open_database
from bot.config import AUDIT_KEY_ENV, AuditConfig, Secret, read_audit_key_file
from bot.errors import AuditError
from bot.models import AuditEntry, AuditHead, AuditRecord, AuditVerification, Outcome
from bot.phrases import Phrase

GENESIS = "0" * 64
log = logging.getLogger("replbot.audit")
CHANGED = "row content was changed (or the key is not the one that wrote it)"
#: The columns each row's hash covers, in the order they are hashed. Fixed for ever: the
#: hashes of rows already written are computed over exactly this sequence.
CHAINED_COLUMNS = (
    "id",
    "at",
    "user_id",
    "user_name",
    "chat_id",
    "command",
    "args",
    "outcome",
    "reason",
    "duration_ms",
)
_ENTRY_COLUMNS = ", ".join(CHAINED_COLUMNS)
EXPORT_COLUMNS = f"{_ENTRY_COLUMNS}, prev_hash, hash"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
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
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


def _payload(prev_hash: str, fields: tuple[Any, ...]) -> bytes:
    text = json.dumps([prev_hash, *fields], separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def chained_fields(row: sqlite3.Row) -> tuple[Any, ...]:
    """The values a row's hash covers, read by name in :data:`CHAINED_COLUMNS` order."""
    return tuple(row[name] for name in CHAINED_COLUMNS)


def row_hash(prev_hash: str, fields: tuple[Any, ...]) -> str:
    """Unkeyed SHA-256 over the previous hash and the row's content (releases before the key)."""
    return hashlib.sha256(_payload(prev_hash, fields)).hexdigest()


def keyed_row_hash(key: bytes, prev_hash: str, fields: tuple[Any, ...]) -> str:
    """HMAC-SHA256 with the audit key over the previous hash and the row's content."""
    return hmac.new(key, _payload(prev_hash, fields), hashlib.sha256).hexdigest()


def default_key_path(db_path: Path) -> Path:
    """The key file used when neither REPLBOT_AUDIT_KEY nor audit.key_file is configured."""
    return db_path.with_name(db_path.name + ".key")


def resolve_audit_key(config: AuditConfig, create: bool) -> tuple[Secret, str]:
    """The audit key and a description of where it came from (never the key itself).

    Configured keys (environment, ``audit.key_file``) win. Otherwise the key file beside the
    database is used; with ``create`` a random one is made (mode 0600) on first start, so the
    demo and fresh installs run without setup. A key beside the database still stops someone
    who only has the database (a copy, a backup, SQL access), but not someone who can read the
    directory: a warning says so.
    """
    if config.key is not None:
        return config.key, config.key_source
    path = default_key_path(config.path)
    where = f"key file {path} beside the database"
    if not path.exists():
        if not create:
            raise AuditError(Phrase.of("error.audit.no_key", env=AUDIT_KEY_ENV, path=str(path)))
        _create_key_file(path)
        log.warning(
            "audit key created in %s; a key beside the database protects less than one kept "
            "elsewhere (set %s or audit.key_file)",
            path,
            AUDIT_KEY_ENV,
        )
    return read_audit_key_file(path, str(path)), where


def _create_key_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first; read theirs
    except OSError as exc:
        raise AuditError(
            Phrase.of("error.audit.key_file", path=str(path), reason=exc.strerror or "")
        ) from exc
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(secrets.token_hex(32) + "\n")


class SqliteAuditLog:
    """The AuditLog port on one SQLite file; call :meth:`open` before use.

    ``key`` signs new rows; without one the log can only be verified (rows from before the
    key), not written.
    """

    def __init__(
        self,
        path: Path,
        key: Secret | None,
        redact: Callable[[str], str] = lambda s: s,
        anchor_every: int = 100,
    ) -> None:
        self._path = path
        self._key = key.reveal().encode("utf-8") if key is not None else None
        self._redact = redact
        self._anchor_every = max(1, anchor_every)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the file and schema if needed; switch to WAL mode; log the head."""
        self._db = await open_database(self._path, _SCHEMA, "audit log")
        await self.log_head()

    async def close(self) -> None:
        """Log the head (the anchor to keep), then close the database connection."""
        if self._db is not None:
            try:
                await self.log_head()
            finally:
                await self._db.close()
                self._db = None

    async def head(self) -> AuditHead:
        """Row count and hash of the newest row (``0`` and the genesis hash when empty)."""
        cursor = await self.db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
        last = await cursor.fetchone()
        return AuditHead(int(last["id"]), str(last["hash"])) if last else AuditHead(0, GENESIS)

    async def log_head(self) -> None:
        """Write the anchor line ``audit head: rows=N hash=H`` (INFO, logger replbot.audit)."""
        _log_anchor(await self.head())

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection (shared with other SQLite-backed stores of the bot)."""
        if self._db is None:
            raise AuditError(Phrase.of("error.store.not_open", store="audit"))
        return self._db

    async def append(self, record: AuditRecord) -> None:
        """Write one row, chained to the previous one, inside one IMMEDIATE transaction."""
        db = self.db
        key = self._key
        if key is None:
            raise AuditError(Phrase.of("error.audit.no_key_open"))
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                cursor = await db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
                last = await cursor.fetchone()
                next_id = (int(last["id"]) + 1) if last else 1
                prev_hash = str(last["hash"]) if last else GENESIS
                values: dict[str, Any] = {
                    "id": next_id,
                    "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "user_id": record.user_id,
                    "user_name": self._redact(record.user_name),
                    "chat_id": record.chat_id,
                    "command": self._redact(record.command),
                    "args": self._redact(record.args),
                    "outcome": record.outcome.value,
                    "reason": self._redact(record.reason),
                    "duration_ms": int(record.duration_ms),
                }
                fields = tuple(values[name] for name in CHAINED_COLUMNS)
                new_hash = keyed_row_hash(key, prev_hash, fields)
                await db.execute(
                    f"INSERT INTO audit ({EXPORT_COLUMNS}) "  # noqa: S608
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*fields, prev_hash, new_hash),
                )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        if next_id % self._anchor_every == 0:
            _log_anchor(AuditHead(next_id, new_hash))

    async def recent(self, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` rows, newest first."""
        cursor = await self.db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM audit ORDER BY id DESC LIMIT ?",  # noqa: S608
            (limit,),
        )
        return [_entry(row) for row in await cursor.fetchall()]

    async def export_rows(self, since: datetime | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every row (oldest first; with ``since``, those written at or after it), as stored,
        hashes included, so an archive can be verified again. Streams: one row at a time."""
        start = ""  # every stored "at" is an ISO UTC time, so text order is time order
        if since is not None:
            moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
            start = moment.astimezone(UTC).isoformat(timespec="milliseconds")
        cursor = await self.db.execute(
            f"SELECT {EXPORT_COLUMNS} FROM audit WHERE at >= ? ORDER BY id",  # noqa: S608
            (start,),
        )
        async for row in cursor:
            yield dict(zip(row.keys(), row, strict=True))

    async def verify(self, expect_head: AuditHead | None = None) -> AuditVerification:
        """Walk the whole chain; report the first row whose hash or link does not match.

        Every row must carry the HMAC of the audit key, except a prefix of unkeyed rows from
        releases before the key. With ``expect_head`` (an anchor logged earlier) the log must
        still hold that many rows and that row's hash: deleting the newest rows is caught.
        """
        cursor = await self.db.execute(
            f"SELECT {EXPORT_COLUMNS} FROM audit ORDER BY id"  # noqa: S608
        )
        prev_hash = GENESIS
        count = unkeyed = 0
        keyed_seen = False
        anchored_hash: str | None = None
        async for row in cursor:
            count += 1
            row_id, stored = int(row["id"]), str(row["hash"])
            problem, keyed = self._check_row(row, count, prev_hash, keyed_seen)
            if problem is not None:
                return AuditVerification(count, False, row_id, problem, unkeyed_rows=unkeyed)
            keyed_seen = keyed_seen or keyed
            unkeyed += 0 if keyed else 1
            if expect_head is not None and row_id == expect_head.rows:
                anchored_hash = stored
            prev_hash = stored
        head = AuditHead(count, prev_hash) if count else None
        if expect_head is not None and expect_head.rows > 0:
            if count < expect_head.rows:
                return AuditVerification(
                    count,
                    False,
                    count + 1,
                    f"the log ends at row {count}, the anchor names row {expect_head.rows}: "
                    "the newest rows were deleted",
                    head,
                    unkeyed,
                )
            if anchored_hash != expect_head.hash:
                return AuditVerification(
                    count,
                    False,
                    expect_head.rows,
                    "row hash differs from the anchor",
                    head,
                    unkeyed,
                )
        return AuditVerification(rows=count, ok=True, head=head, unkeyed_rows=unkeyed)

    def _check_row(
        self, row: sqlite3.Row, expected_id: int, prev_hash: str, keyed_seen: bool
    ) -> tuple[str | None, bool]:
        """(why ``row`` breaks the chain or None, whether it carries the key's HMAC)."""
        fields, stored = chained_fields(row), str(row["hash"])
        if int(row["id"]) != expected_id:
            return f"row {expected_id} is missing", False
        if row["prev_hash"] != prev_hash:
            return "link to previous row broken", False
        if self._key is not None and hmac.compare_digest(
            keyed_row_hash(self._key, prev_hash, fields), stored
        ):
            return None, True
        if row_hash(prev_hash, fields) == stored:
            return ("row is not signed with the audit key" if keyed_seen else None), False
        if self._key is None:
            return (
                f"row is signed or was changed; verify it with the audit key ({AUDIT_KEY_ENV})",
                False,
            )
        return CHANGED, False


def _log_anchor(head: AuditHead) -> None:
    log.info("audit head: rows=%d hash=%s", head.rows, head.hash)


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=int(row["id"]),
        at=datetime.fromisoformat(str(row["at"])),
        user_id=row["user_id"],
        user_name=str(row["user_name"]),
        chat_id=row["chat_id"],
        command=str(row["command"]),
        args=str(row["args"]),
        outcome=Outcome(str(row["outcome"])),
        reason=str(row["reason"]),
        duration_ms=int(row["duration_ms"]),
    )
