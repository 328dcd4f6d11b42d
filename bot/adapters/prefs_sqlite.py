"""Per-user preferences in SQLite: the reply language chosen with /lang (migration 4)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosqlite

from bot.adapters.sqlite import open_database
from bot.errors import AuditError
from bot.phrases import Phrase

_SCHEMA = ""  # the table comes from migration 4 (bot.adapters.sqlite.MIGRATIONS)


class SqliteLanguageStore:
    """The LanguageStore port on the bot's SQLite file, keyed by Telegram user id."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open (and migrate) the file."""
        self._db = await open_database(self._path, _SCHEMA, "language store")

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise AuditError(Phrase.of("error.store.not_open", store="prefs"))
        return self._db

    async def get(self, user_id: int) -> str | None:
        """The language ``user_id`` chose, or None."""
        cursor = await self._conn.execute(
            "SELECT language FROM user_languages WHERE user_id = ?", (user_id,)
        )
        row = await cursor.fetchone()
        return str(row["language"]) if row is not None else None

    async def set(self, user_id: int, language: str) -> None:
        """Remember ``language`` for ``user_id`` (the newest choice wins)."""
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO user_languages (user_id, language, set_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET language = excluded.language, "
                "set_at = excluded.set_at",
                (user_id, language, time.time()),
            )
