"""One way to open replbot's SQLite file (audit log, rebuild jobs, alerts, outbox)."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from bot.errors import AuditError


async def open_database(path: Path, schema: str, what: str) -> aiosqlite.Connection:
    """Open ``path`` in autocommit mode with WAL journaling and apply ``schema``.

    WAL + ``synchronous=NORMAL``: a commit survives a crash of the bot; only a power loss may
    lose the newest rows, never corrupt the file or the audit hash chain. Several stores open
    their own connection to the same file; ``busy_timeout`` serialises their writes.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(schema)
    except (OSError, aiosqlite.Error) as exc:
        raise AuditError(f"cannot open the {what} {path}: {exc}") from exc
    return db
