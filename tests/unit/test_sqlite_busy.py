"""A write that meets another connection's transaction waits for it instead of failing: an
audit row must not be lost because the monitor was writing history on a loaded machine."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from bot.adapters.sqlite import open_database

HELD_S = 6.0  # longer than the 5 s the stores used to wait


async def test_a_write_waits_for_a_long_transaction_of_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    db = await open_database(path, "CREATE TABLE t (x);", "test store", migrations=())
    started = threading.Event()

    def hold_the_write_lock() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        started.set()
        threading.Event().wait(HELD_S)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        await asyncio.to_thread(started.wait)
        await db.execute("INSERT INTO t VALUES (2)")
        rows = await (await db.execute("SELECT x FROM t ORDER BY x")).fetchall()
        assert [row["x"] for row in rows] == [1, 2]
    finally:
        await asyncio.to_thread(holder.join)
        await db.close()
