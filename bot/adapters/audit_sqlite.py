"""SQLite audit log (aiosqlite, WAL mode): append-only rows chained by SHA-256.

Each row stores the hash of the previous row and its own hash over its content, so an
edited, inserted or deleted row breaks the chain and ``verify()`` names the first bad id.
Triggers refuse UPDATE and DELETE; the chain catches edits made around them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.adapters.sqlite import open_database
from bot.errors import AuditError
from bot.models import AuditEntry, AuditRecord, AuditVerification, Outcome

GENESIS = "0" * 64

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


def row_hash(prev_hash: str, fields: tuple[Any, ...]) -> str:
    """SHA-256 over the previous hash and the row's content in canonical JSON."""
    payload = json.dumps([prev_hash, *fields], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SqliteAuditLog:
    """The AuditLog port on one SQLite file; call :meth:`open` before use."""

    def __init__(self, path: Path, redact: Callable[[str], str] = lambda s: s) -> None:
        self._path = path
        self._redact = redact
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the file and schema if needed; switch to WAL mode."""
        self._db = await open_database(self._path, _SCHEMA, "audit log")

    async def close(self) -> None:
        """Close the database connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection (shared with other SQLite-backed stores of the bot)."""
        if self._db is None:
            raise AuditError("audit log is not open")
        return self._db

    async def append(self, record: AuditRecord) -> None:
        """Write one row, chained to the previous one, inside one IMMEDIATE transaction."""
        db = self.db
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                cursor = await db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
                last = await cursor.fetchone()
                next_id = (int(last[0]) + 1) if last else 1
                prev_hash = str(last[1]) if last else GENESIS
                fields = (
                    next_id,
                    datetime.now(UTC).isoformat(timespec="milliseconds"),
                    record.user_id,
                    self._redact(record.user_name),
                    record.chat_id,
                    self._redact(record.command),
                    self._redact(record.args),
                    record.outcome.value,
                    self._redact(record.reason),
                    int(record.duration_ms),
                )
                await db.execute(
                    "INSERT INTO audit (id, at, user_id, user_name, chat_id, command, args, "
                    "outcome, reason, duration_ms, prev_hash, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*fields, prev_hash, row_hash(prev_hash, fields)),
                )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def recent(self, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` rows, newest first."""
        cursor = await self.db.execute(
            "SELECT id, at, user_id, user_name, chat_id, command, args, outcome, reason, "
            "duration_ms FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_entry(tuple(row)) for row in await cursor.fetchall()]

    async def verify(self) -> AuditVerification:
        """Walk the whole chain; report the first row whose hash or link does not match."""
        cursor = await self.db.execute(
            "SELECT id, at, user_id, user_name, chat_id, command, args, outcome, reason, "
            "duration_ms, prev_hash, hash FROM audit ORDER BY id"
        )
        prev_hash = GENESIS
        expected_id = 1
        count = 0
        async for row in cursor:
            count += 1
            fields = tuple(row[:10])
            row_id = int(row[0])
            if row_id != expected_id:
                return AuditVerification(count, False, row_id, f"row {expected_id} is missing")
            if row[10] != prev_hash:
                return AuditVerification(count, False, row_id, "link to previous row broken")
            if row_hash(prev_hash, fields) != row[11]:
                return AuditVerification(count, False, row_id, "row content was changed")
            prev_hash = str(row[11])
            expected_id += 1
        return AuditVerification(rows=count, ok=True)


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry(
        id=int(row[0]),
        at=datetime.fromisoformat(str(row[1])),
        user_id=row[2],
        user_name=str(row[3]),
        chat_id=row[4],
        command=str(row[5]),
        args=str(row[6]),
        outcome=Outcome(str(row[7])),
        reason=str(row[8]),
        duration_ms=int(row[9]),
    )
