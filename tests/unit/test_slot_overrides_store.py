"""The slots the bot attached or detached survive a restart (SQLite, migration 5)."""

from __future__ import annotations

from pathlib import Path

from bot.adapters.slots_sqlite import SqliteSlotOverrideStore
from bot.services.slotless import SlotlessService
from bot.services.slotview import SlotOverrides
from tests.unit.fakes import FakeClock
from tests.unit.test_slotless_undo import cluster, off_slot


async def test_an_attached_then_detached_slot_is_remembered_by_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    store = SqliteSlotOverrideStore(path)
    await store.open()
    pg, overrides = off_slot(), SlotOverrides()
    config = (cluster("walreceiver", None),)
    svc = SlotlessService(config, pg, overrides, FakeClock(), 5, store=store)
    planned = await svc.attach_plan("pg2", "pg2_new", None)
    outcome = await svc.attach("pg2", "pg2_new", None, planned.digest)
    assert outcome.ok, outcome
    await store.close()

    again = SqliteSlotOverrideStore(path)  # the bot restarts
    await again.open()
    assert await again.load() == [("main", "pg2", "pg2_new")]
    restored = SlotOverrides()
    for cluster_name, node, slot_name in await again.load():
        restored.set(cluster_name, node, slot_name)
    svc = SlotlessService(config, pg, restored, FakeClock(), 5, store=again)
    planned = await svc.detach_plan("pg2", None)
    assert planned.slot == "pg2_new"
    outcome = await svc.detach("pg2", None, planned.digest)
    assert outcome.ok, outcome
    assert await again.load() == [("main", "pg2", None)]  # detached: no slot, whatever config
    await again.close()
