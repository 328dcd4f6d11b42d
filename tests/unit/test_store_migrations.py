"""The SQLite store lives for years: ``PRAGMA user_version`` and ordered migrations, a store
from a newer release refused, and retention of sent alert messages and resolved alerts (never
of audit rows). All on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from bot.adapters import alerts_sqlite, audit_sqlite, jobs_sqlite
from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.adapters.jobs_sqlite import SqliteJobStore
from bot.adapters.sqlite import MIGRATIONS, SCHEMA_VERSION, Migration, migrate, open_database
from bot.config import parse_config
from bot.errors import AuditError, ConfigError
from bot.models import Alert, AlertRule, AlertState, AuditHead, OutgoingMessage, Severity
from tests.unit.test_audit_log import keyed_log, write_rows
from tests.unit.test_config import ENV, valid_data
from tests.unit.worded import english

DAY = 86400.0
NOW = 1_900_000_000.0


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def schema_of(path: Path) -> set[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return {(str(n), str(s)) for n, s in db.execute("SELECT name, sql FROM sqlite_master")}
    finally:
        db.close()


def release_0_1_store(path: Path) -> None:
    """What replbot 0.1.0 left on disk: the stores' CREATE … IF NOT EXISTS scripts run one
    after the other, and user_version never set (0)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for script in (audit_sqlite._SCHEMA, jobs_sqlite._SCHEMA, alerts_sqlite._SCHEMA):
            db.executescript(script)
    finally:
        db.close()


def test_migrations_are_numbered_from_1_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1].version == SCHEMA_VERSION
    assert all(m.description for m in MIGRATIONS)


async def test_a_store_made_by_release_0_1_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    release_0_1_store(path)
    old_schema = schema_of(path)
    head = await write_rows_on_old_store(path)
    assert user_version(path) == 0

    log = keyed_log(path)
    await log.open()
    try:
        result = await log.verify(expect_head=head)
    finally:
        await log.close()
    jobs = SqliteJobStore(path)
    await jobs.open()
    await jobs.close()

    assert result.ok and result.rows == 3
    assert user_version(path) == SCHEMA_VERSION
    new_schema = dict(schema_of(path))
    for name, sql in old_schema:  # nothing dropped or rewritten, only added (columns at the end)
        assert new_schema[name] == sql or new_schema[name].startswith(sql[:-1].rstrip()), name
    assert {"alert_outbox_sent_at", "alerts_resolved_at"} <= {n for n, _ in schema_of(path)}


async def write_rows_on_old_store(path: Path) -> AuditHead:
    """Audit rows as release 0.1 wrote them: appended through SqliteAuditLog; user_version is
    put back to 0 and what migrations add (indexes, columns) is removed, so the file is 0.1's
    again."""
    head = await write_rows(path, 3)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("DROP INDEX IF EXISTS alert_outbox_sent_at")
        db.execute("DROP INDEX IF EXISTS alerts_resolved_at")
        columns = {row[1] for row in db.execute("PRAGMA table_info(rebuild_jobs)")}
        if "kind" in columns:  # migration 3's column
            db.execute("ALTER TABLE rebuild_jobs DROP COLUMN kind")
        columns = {row[1] for row in db.execute("PRAGMA table_info(alert_outbox)")}
        if "chart" in columns:  # migration 4's column and tables
            db.execute("ALTER TABLE alert_outbox DROP COLUMN chart")
        db.execute("DROP TABLE IF EXISTS replica_history")
        db.execute("DROP TABLE IF EXISTS slot_history")
        db.execute("PRAGMA user_version = 0")
    finally:
        db.close()
    return head


async def test_a_store_of_a_newer_release_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()

    with pytest.raises(AuditError) as caught:
        await SqliteAlertStore(path).open()

    message = english(caught.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"knows up to {SCHEMA_VERSION}" in message
    assert "upgrade replbot" in message
    assert user_version(path) == SCHEMA_VERSION + 1
    assert schema_of(path) == set()  # not one table created


async def test_a_failing_migration_rolls_back_every_step_of_the_run(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    steps = (
        Migration(1, "a table", ("CREATE TABLE one (x INTEGER)",)),
        Migration(2, "a broken step", ("CREATE TABLE two (x INTEGER)", "CREATE TABLE one (y)")),
    )
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await migrate(db, path, steps)
    finally:
        await db.close()

    assert user_version(path) == 0
    assert schema_of(path) == set()


async def test_opening_twice_applies_each_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    steps = (Migration(1, "a table", ("CREATE TABLE one (x INTEGER)",)),)
    for _ in range(2):
        db = await open_database(path, "", "test store", migrations=steps)
        await db.close()
    assert user_version(path) == 1


def alert(n: int, state: AlertState, resolved_at: float | None, fired_at: float) -> Alert:
    return Alert(
        id=0,
        cluster="main",
        node=f"pg{n}",
        rule=AlertRule.NOT_STREAMING,
        subject="",
        severity=Severity.CRITICAL,
        figures={},
        state=state,
        first_seen=fired_at,
        fired_at=fired_at,
        resolved_at=resolved_at,
    )


async def test_retention_deletes_old_sent_messages_and_resolved_alerts_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    head = await write_rows(path, 2)
    store = SqliteAlertStore(path)
    await store.open()
    try:
        async with store.transaction() as tx:
            old_resolved = await tx.insert_alert(alert(1, AlertState.RESOLVED, NOW - 91 * DAY, 0))
            new_resolved = await tx.insert_alert(alert(2, AlertState.RESOLVED, NOW - 89 * DAY, 0))
            old_firing = await tx.insert_alert(alert(3, AlertState.FIRING, None, NOW - 200 * DAY))
            ids = [await tx.enqueue(-100, None, OutgoingMessage(f"m{i}")) for i in range(4)]
        await store.mark_sent(ids[0], 11, NOW - 91 * DAY)  # old, delivered: goes
        await store.mark_sent(ids[1], 12, NOW - 1 * DAY)  # recent: stays
        await store.record_failure(ids[2], "chat gone", final=True)  # failed: stays
        # ids[3] stays pending, however old

        deleted = await store.prune_history(NOW - 90 * DAY)

        assert deleted == (1, 1)
        left_ids = [row[0] for row in await store.outbox_rows()]
        assert left_ids == ids[1:]
        assert await store.get(old_resolved.id) is None
        assert await store.get(new_resolved.id) is not None
        assert await store.get(old_firing.id) is not None
    finally:
        await store.close()
    log = keyed_log(path)
    await log.open()
    try:
        verified = await log.verify(expect_head=head)
    finally:
        await log.close()
    assert verified.ok and verified.rows == 2  # the audit log is never pruned


def test_retention_days_defaults_to_90_and_must_be_at_least_one_day() -> None:
    data = valid_data()
    assert parse_config(data, ENV).monitor.retention_days == 90
    data.setdefault("monitor", {})["retention_days"] = 30
    assert parse_config(data, ENV).monitor.retention_days == 30
    data["monitor"]["retention_days"] = 0
    with pytest.raises(ConfigError) as caught:
        parse_config(data, ENV)
    assert caught.value.key == "monitor.retention_days"
