"""Rebuild jobs in SQLite: one row per job, a partial unique index as the per-node lock.

The lock is a row in a lock-holding state (running, interrupted, rollback_failed), so it
survives a crash or restart of the bot: a second rebuild of the node is refused until the
job is rolled back, succeeds, or an admin abandons it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite

from bot.adapters.sqlite import open_database
from bot.errors import RebuildRefused
from bot.models import RebuildJob, RebuildState
from bot.phrases import Phrase

_LOCKING = ", ".join(f"'{s.value}'" for s in RebuildState if s.holds_lock)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS rebuild_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster       TEXT    NOT NULL,
    node          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    step          TEXT    NOT NULL,
    requested_by  INTEGER NOT NULL,
    confirmed_by  INTEGER,
    old_dir       TEXT    NOT NULL,
    failed_dir    TEXT    NOT NULL,
    rollback_slot TEXT    NOT NULL,
    started_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    detail        TEXT    NOT NULL DEFAULT '',
    moved_id      TEXT    NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS rebuild_jobs_one_per_node
    ON rebuild_jobs (cluster, node) WHERE state IN ({_LOCKING});
"""

_COLUMNS = (
    "id, cluster, node, state, step, requested_by, confirmed_by, old_dir, failed_dir, "
    "rollback_slot, started_at, updated_at, detail, moved_id, kind"
)


class SqliteJobStore:
    """The JobStore port on an SQLite file (the audit database by default)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Create the table and the lock index if needed."""
        self._db = await open_database(self._path, _SCHEMA, "rebuild job store")
        cursor = await self._db.execute("PRAGMA table_info(rebuild_jobs)")
        if "moved_id" not in {row["name"] for row in await cursor.fetchall()}:
            # a job store written before moved_id existed
            await self._db.execute(
                "ALTER TABLE rebuild_jobs ADD COLUMN moved_id TEXT NOT NULL DEFAULT ''"
            )

    async def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        assert self._db is not None, "job store is not open"
        return self._db

    async def create(
        self,
        cluster: str,
        node: str,
        requested_by: int,
        confirmed_by: int | None,
        old_dir: str,
        failed_dir: str,
        rollback_slot: str,
        kind: str = "rebuild",
    ) -> RebuildJob:
        """Insert a RUNNING job; RebuildRefused if the node's lock is held."""
        now = time.time()
        try:
            cursor = await self._conn.execute(
                "INSERT INTO rebuild_jobs (cluster, node, state, step, requested_by, "
                "confirmed_by, old_dir, failed_dir, rollback_slot, started_at, updated_at, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cluster,
                    node,
                    RebuildState.RUNNING.value,
                    "starting",
                    requested_by,
                    confirmed_by,
                    old_dir,
                    failed_dir,
                    rollback_slot,
                    now,
                    now,
                    kind,
                ),
            )
        except sqlite3.IntegrityError as exc:
            holder = await self.holding_lock(cluster, node)
            if holder is None:
                raise RebuildRefused(Phrase.of("error.job.busy_unknown", node=node)) from exc
            raise RebuildRefused(
                Phrase.of(
                    "error.rebuild.busy",
                    node=node,
                    job=holder.id,
                    state=holder.state.value,
                    where=holder.step,
                )
            ) from exc
        job_id = cursor.lastrowid
        assert job_id is not None
        return await self._get(job_id)

    async def update(
        self,
        job_id: int,
        *,
        state: RebuildState | None = None,
        step: str | None = None,
        detail: str | None = None,
        moved_id: str | None = None,
    ) -> RebuildJob:
        """Record progress or a new state (committed before this returns)."""
        current = await self._get(job_id)
        await self._conn.execute(
            "UPDATE rebuild_jobs SET state = ?, step = ?, detail = ?, moved_id = ?, "
            "updated_at = ? WHERE id = ?",
            (
                (state or current.state).value,
                step if step is not None else current.step,
                detail if detail is not None else current.detail,
                moved_id if moved_id is not None else current.moved_id,
                time.time(),
                job_id,
            ),
        )
        return await self._get(job_id)

    async def holding_lock(self, cluster: str, node: str) -> RebuildJob | None:
        """The job that holds the node's lock, if any."""
        return await self._one(
            f"SELECT {_COLUMNS} FROM rebuild_jobs WHERE cluster = ? AND node = ? "  # noqa: S608
            f"AND state IN ({_LOCKING}) ORDER BY id DESC LIMIT 1",
            (cluster, node),
        )

    async def latest(self, cluster: str, node: str) -> RebuildJob | None:
        """The newest job of the node."""
        return await self._one(
            f"SELECT {_COLUMNS} FROM rebuild_jobs WHERE cluster = ? AND node = ? "  # noqa: S608
            "ORDER BY id DESC LIMIT 1",
            (cluster, node),
        )

    async def in_state(self, state: RebuildState) -> list[RebuildJob]:
        """All jobs in ``state``, oldest first."""
        cursor = await self._conn.execute(
            f"SELECT {_COLUMNS} FROM rebuild_jobs WHERE state = ? ORDER BY id",  # noqa: S608
            (state.value,),
        )
        return [_job(row) for row in await cursor.fetchall()]

    async def _get(self, job_id: int) -> RebuildJob:
        job = await self._one(
            f"SELECT {_COLUMNS} FROM rebuild_jobs WHERE id = ?",  # noqa: S608
            (job_id,),
        )
        assert job is not None
        return job

    async def _one(self, sql: str, params: tuple[Any, ...]) -> RebuildJob | None:
        cursor = await self._conn.execute(sql, params)
        row = await cursor.fetchone()
        return _job(row) if row else None


def _job(row: sqlite3.Row) -> RebuildJob:
    return RebuildJob(
        id=int(row["id"]),
        cluster=str(row["cluster"]),
        node=str(row["node"]),
        state=RebuildState(str(row["state"])),
        step=str(row["step"]),
        requested_by=int(row["requested_by"]),
        confirmed_by=row["confirmed_by"],
        old_dir=str(row["old_dir"]),
        failed_dir=str(row["failed_dir"]),
        rollback_slot=str(row["rollback_slot"]),
        started_at=float(row["started_at"]),
        updated_at=float(row["updated_at"]),
        detail=str(row["detail"]),
        moved_id=str(row["moved_id"]),
        kind=str(row["kind"]),
    )
