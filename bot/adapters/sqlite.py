"""One way to open replbot's SQLite file (audit log, rebuild jobs, alerts, outbox), and the
ordered schema migrations of that file.

The file's ``PRAGMA user_version`` is the number of the last migration applied to it (0: a
file of release 0.1, which had no version). On open, every pending migration runs in order
inside one ``BEGIN IMMEDIATE`` transaction, with the new version set in the same
transaction: a failing step leaves the file exactly as it was. A file whose version is newer
than this code knows is refused before anything is written, so an older binary never
half-understands a newer store. Migrations only add; the audit log's rows and triggers are
never rewritten (it is append-only and hash-chained).

To change the schema: append a :class:`Migration` with the next number; never edit one that
was released.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.errors import AuditError
from bot.phrases import Phrase


@dataclass(frozen=True)
class Migration:
    """Step ``version`` of the store's schema: SQL statements (or a function giving them)."""

    version: int
    description: str
    statements: Sequence[str] | Callable[[], Sequence[str]]

    def sql(self) -> Sequence[str]:
        """The statements to execute, in order."""
        return self.statements() if callable(self.statements) else self.statements


def split_statements(script: str) -> list[str]:
    """``script`` cut into complete SQL statements (a trigger's body stays whole)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    return statements


def _baseline() -> list[str]:
    """Release 0.1's tables, as each store created them (IF NOT EXISTS: a 0.1 file passes)."""
    from bot.adapters import alerts_sqlite, audit_sqlite, jobs_sqlite

    return [
        statement
        for script in (audit_sqlite._SCHEMA, jobs_sqlite._SCHEMA, alerts_sqlite._SCHEMA)
        for statement in split_statements(script)
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "baseline: audit log, rebuild jobs, alert state and outbox (release 0.1)", _baseline
    ),
    Migration(
        2,
        "indexes for retention: sent outbox rows by sent_at, resolved alerts by resolved_at",
        (
            "CREATE INDEX IF NOT EXISTS alert_outbox_sent_at ON alert_outbox (sent_at) "
            "WHERE state = 'sent'",
            "CREATE INDEX IF NOT EXISTS alerts_resolved_at ON alerts (resolved_at) "
            "WHERE state = 'resolved'",
        ),
    ),
    Migration(
        3,
        "rebuild_jobs.kind: repairs share the per-node lock with rebuilds",
        ("ALTER TABLE rebuild_jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'rebuild'",),
    ),
    Migration(
        4,
        "monitor history (replica lag, slot WAL) for /graph; alert_outbox.chart",
        (
            "CREATE TABLE IF NOT EXISTS replica_history (cluster TEXT NOT NULL, "
            "replica TEXT NOT NULL, at REAL NOT NULL, lag_bytes INTEGER, lag_s REAL, "
            "streaming INTEGER NOT NULL, coarse INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX IF NOT EXISTS replica_history_at ON replica_history (cluster, at)",
            "CREATE TABLE IF NOT EXISTS slot_history (cluster TEXT NOT NULL, "
            "slot TEXT NOT NULL, at REAL NOT NULL, retained_bytes INTEGER, "
            "coarse INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX IF NOT EXISTS slot_history_at ON slot_history (cluster, at)",
            "ALTER TABLE alert_outbox ADD COLUMN chart TEXT NOT NULL DEFAULT ''",
        ),
    ),
    Migration(
        5,
        "slot_overrides: slots attached or detached from the chat survive a restart",
        (
            "CREATE TABLE IF NOT EXISTS slot_overrides (cluster TEXT NOT NULL, "
            "node TEXT NOT NULL, slot TEXT, updated_at REAL NOT NULL, "
            "PRIMARY KEY (cluster, node))",
        ),
    ),
    Migration(
        6,
        "user_languages: the reply language each Telegram user chose with /lang",
        (
            "CREATE TABLE IF NOT EXISTS user_languages ("
            "user_id INTEGER PRIMARY KEY, language TEXT NOT NULL, set_at REAL NOT NULL)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


async def migrate(
    db: aiosqlite.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the file behind ``db`` (autocommit mode) to the last of ``migrations``.

    Returns the version it was at. Raises AuditError, writing nothing, if the file is newer.
    """
    latest = migrations[-1].version if migrations else 0
    await db.execute("BEGIN IMMEDIATE")
    try:
        cursor = await db.execute("PRAGMA user_version")
        cursor.row_factory = sqlite3.Row  # whatever the connection's factory
        row = await cursor.fetchone()
        found = int(row["user_version"]) if row is not None else 0
        if found > latest:
            raise AuditError(
                Phrase.of("error.store.too_new", path=str(path), found=found, latest=latest)
            )
        for migration in migrations:
            if migration.version > found:
                for statement in migration.sql():
                    await db.execute(statement)
        if latest > found:
            await db.execute(f"PRAGMA user_version = {int(latest)}")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")
    return found


BUSY_TIMEOUT_MS = 30_000
"""How long a write waits for another connection's transaction: on a loaded host the monitor's
history or alert transaction can take seconds, and an audit row must wait, not fail."""


async def open_database(
    path: Path, schema: str, what: str, migrations: Sequence[Migration] = MIGRATIONS
) -> aiosqlite.Connection:
    """Open ``path`` in autocommit mode with WAL journaling, migrate it, apply ``schema``.

    Rows come back as :class:`sqlite3.Row`: the stores read them by column name.

    WAL + ``synchronous=NORMAL``: a commit survives a crash of the bot; only a power loss may
    lose the newest rows, never corrupt the file or the audit hash chain. Several stores open
    their own connection to the same file; ``busy_timeout`` serialises their writes.
    ``schema`` (the store's CREATE … IF NOT EXISTS script) runs after the migrations.
    """
    db: aiosqlite.Connection | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = sqlite3.Row
        await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await migrate(db, path, migrations)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        if schema:
            await db.executescript(schema)
    except (OSError, aiosqlite.Error) as exc:
        if db is not None:
            await db.close()
        raise AuditError(
            Phrase.of("error.store.open", store=what, path=str(path), reason=str(exc))
        ) from exc
    except AuditError:
        if db is not None:
            await db.close()
        raise
    return db
