"""Slot overrides in SQLite: one row per (cluster, node) whose slot the bot attached or
detached from the chat (``slot`` NULL: detached). Read once at start into
:class:`~bot.services.slotview.SlotOverrides`, written after each /attachslot or /detachslot."""

from __future__ import annotations

import time
from pathlib import Path

import aiosqlite

from bot.adapters.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS slot_overrides (
    cluster    TEXT NOT NULL,
    node       TEXT NOT NULL,
    slot       TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (cluster, node)
);
"""


class SqliteSlotOverrideStore:
    """The SlotOverrideStore port on an SQLite file (the audit database by default)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open (and migrate) the file."""
        self._db = await open_database(self._path, _SCHEMA, "slot override store")

    async def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    def _conn(self) -> aiosqlite.Connection:
        assert self._db is not None, "slot override store is not open"
        return self._db

    async def load(self) -> list[tuple[str, str, str | None]]:
        """Every recorded override, in (cluster, node) order."""
        cursor = await self._conn().execute(
            "SELECT cluster, node, slot FROM slot_overrides ORDER BY cluster, node"
        )
        rows = await cursor.fetchall()
        return [
            (
                str(row["cluster"]),
                str(row["node"]),
                None if row["slot"] is None else str(row["slot"]),
            )
            for row in rows
        ]

    async def save(self, cluster: str, node: str, slot: str | None) -> None:
        """Insert or replace the override of ``cluster``/``node``."""
        await self._conn().execute(
            "INSERT INTO slot_overrides (cluster, node, slot, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (cluster, node) DO UPDATE SET slot = excluded.slot, "
            "updated_at = excluded.updated_at",
            (cluster, node, slot, time.time()),
        )
