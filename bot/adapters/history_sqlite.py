"""The monitor's history in SQLite: per replica byte lag, time lag and streaming or not, per slot
the WAL it retains — what /graph and the charts on alerts draw.

Bounded and downsampled as it ages: every poll is kept for ``full_s`` (6 h), then folded into
one point per minute (the minute's highest lag and retained WAL, "not streaming" if any poll of
the minute was), kept for ``keep_s`` (7 days); older points are deleted. A poll costs one
INSERT transaction; :meth:`SqliteHistoryStore.compact` does the folding and runs apart from
the polls (the runtime calls it every few minutes). The tables live in the bot's one SQLite
file (migration 4), so the history survives a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from bot.adapters.sqlite import open_database
from bot.errors import AuditError
from bot.models import History, ReplicaSample, SlotSample
from bot.phrases import Phrase

FULL_RESOLUTION_S = 6 * 3600.0
KEEP_S = 7 * 86400.0
BUCKET_S = 60


class SqliteHistoryStore:
    """The HistoryStore port on the bot's SQLite file."""

    def __init__(
        self, path: Path, full_s: float = FULL_RESOLUTION_S, keep_s: float = KEEP_S
    ) -> None:
        self._path = path
        self._full_s = full_s
        self._keep_s = keep_s
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open the file (its migrations create the tables)."""
        self._db = await open_database(self._path, "", "monitor history")

    async def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        assert self._db is not None, "history store is not open"
        return self._db

    async def record(self, replicas: Sequence[ReplicaSample], slots: Sequence[SlotSample]) -> None:
        """Store one poll's samples in one transaction (nothing to store: no transaction)."""
        if not replicas and not slots:
            return
        db = self._conn
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                if replicas:
                    await db.executemany(
                        "INSERT INTO replica_history (cluster, replica, at, lag_bytes, lag_s, "
                        "streaming) VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (r.cluster, r.replica, r.at, r.lag_bytes, r.lag_s, int(r.streaming))
                            for r in replicas
                        ],
                    )
                if slots:
                    await db.executemany(
                        "INSERT INTO slot_history (cluster, slot, at, retained_bytes) "
                        "VALUES (?, ?, ?, ?)",
                        [(s.cluster, s.slot, s.at, s.retained_bytes) for s in slots],
                    )
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
        except aiosqlite.Error as exc:
            raise AuditError(
                Phrase.of("error.history.write", path=str(self._path), reason=str(exc))
            ) from exc

    async def history(self, cluster: str, since: float) -> History:
        """``cluster``'s samples taken at or after ``since``, oldest first."""
        db = self._conn
        cursor = await db.execute(
            "SELECT replica, at, lag_bytes, lag_s, streaming FROM replica_history "
            "WHERE cluster = ? AND at >= ? ORDER BY at, replica",
            (cluster, since),
        )
        replicas = tuple(
            ReplicaSample(
                cluster,
                str(row["replica"]),
                float(row["at"]),
                None if row["lag_bytes"] is None else int(row["lag_bytes"]),
                None if row["lag_s"] is None else float(row["lag_s"]),
                bool(row["streaming"]),
            )
            for row in await cursor.fetchall()
        )
        cursor = await db.execute(
            "SELECT slot, at, retained_bytes FROM slot_history "
            "WHERE cluster = ? AND at >= ? ORDER BY at, slot",
            (cluster, since),
        )
        slots = tuple(
            SlotSample(
                cluster,
                str(row["slot"]),
                float(row["at"]),
                None if row["retained_bytes"] is None else int(row["retained_bytes"]),
            )
            for row in await cursor.fetchall()
        )
        return History(replicas, slots)

    async def compact(self, now: float) -> tuple[int, int]:
        """Fold polls older than the full-resolution window into minutes, delete points older
        than the kept window; returns (polls folded, points deleted). One transaction."""
        # a minute boundary: a minute is folded whole, once, so folded points never collide
        fold_before = (now - self._full_s) // BUCKET_S * BUCKET_S
        drop_before = now - self._keep_s
        db = self._conn
        folded = dropped = 0
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute(
                "INSERT INTO replica_history (cluster, replica, at, lag_bytes, lag_s, streaming, "
                "coarse) SELECT cluster, replica, CAST(at / ? AS INTEGER) * ?, max(lag_bytes), "
                "max(lag_s), min(streaming), 1 FROM replica_history "
                "WHERE coarse = 0 AND at < ? GROUP BY cluster, replica, CAST(at / ? AS INTEGER)",
                (BUCKET_S, BUCKET_S, fold_before, BUCKET_S),
            )
            await db.execute(
                "INSERT INTO slot_history (cluster, slot, at, retained_bytes, coarse) "
                "SELECT cluster, slot, CAST(at / ? AS INTEGER) * ?, max(retained_bytes), 1 "
                "FROM slot_history WHERE coarse = 0 AND at < ? "
                "GROUP BY cluster, slot, CAST(at / ? AS INTEGER)",
                (BUCKET_S, BUCKET_S, fold_before, BUCKET_S),
            )
            for table in ("replica_history", "slot_history"):
                cursor = await db.execute(
                    f"DELETE FROM {table} WHERE coarse = 0 AND at < ?",  # noqa: S608
                    (fold_before,),
                )
                folded += max(cursor.rowcount, 0)
                cursor = await db.execute(
                    f"DELETE FROM {table} WHERE at < ?",  # noqa: S608
                    (drop_before,),
                )
                dropped += max(cursor.rowcount, 0)
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")
        return folded, dropped

    async def counts(self) -> dict[str, int]:
        """Rows per table and resolution (for tests and benchmarks)."""
        out: dict[str, int] = {}
        for table in ("replica_history", "slot_history"):
            cursor = await self._conn.execute(
                f"SELECT coarse, count(*) AS points FROM {table} GROUP BY coarse"  # noqa: S608
            )
            for row in await cursor.fetchall():
                out[f"{table}.{'minute' if row['coarse'] else 'full'}"] = int(row["points"])
        return out
