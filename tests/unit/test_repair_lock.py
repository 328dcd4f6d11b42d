"""Repair jobs share the rebuild's per-node lock, and a rebuild's rollback never touches one."""

from __future__ import annotations

from bot.errors import RebuildRefused
from bot.models import RebuildPlan, RebuildState
from bot.services.rebuild.plan import build_plan, new_tag
from bot.services.rebuild.service import RebuildService
from tests.unit.fakes import (
    ADMIN_ID,
    FakeAuditLog,
    FakeClock,
    FakeHost,
    FakeJobStore,
    FakePostgres,
    rebuild_config,
)
from tests.unit.worded import raises_worded


def service() -> tuple[RebuildService, FakeJobStore, FakeHost, RebuildPlan]:
    config = rebuild_config()
    cluster = next(c for c in config.clusters if c.name == "main")
    node = next(n for n in cluster.nodes if n.name == "pg2")
    clock = FakeClock()
    pg = FakePostgres.healthy()
    plan = build_plan(cluster, node, new_tag(clock.time()), False)
    host = FakeHost(pg, node, plan.old_dir, plan.failed_dir)
    jobs = FakeJobStore(clock)
    rebuild = RebuildService(config, pg, host, jobs, FakeAuditLog(clock), clock)
    return rebuild, jobs, host, plan


async def test_an_interrupted_repair_is_never_rolled_back_as_a_rebuild() -> None:
    rebuild, jobs, host, _ = service()
    job = await jobs.create("main", "pg2", ADMIN_ID, ADMIN_ID, "", "", "", kind="repair.resume")
    await jobs.update(job.id, state=RebuildState.INTERRUPTED, step="start")

    with raises_worded(RebuildRefused, r"is a repair\.resume, not a rebuild"):
        await rebuild.rollback("pg2", None, ADMIN_ID)
    assert host.moves == []
    assert (await jobs.holding_lock("main", "pg2")) is not None  # --abandon releases it
    await rebuild.abandon("pg2", None, ADMIN_ID)
    assert (await jobs.holding_lock("main", "pg2")) is None


async def test_a_running_repair_holds_the_rebuild_lock() -> None:
    rebuild, jobs, _, plan = service()
    await jobs.create("main", "pg2", ADMIN_ID, ADMIN_ID, "", "", "", kind="repair.parameters")
    with raises_worded(RebuildRefused, "already in progress"):
        await rebuild.start(plan, ADMIN_ID, ADMIN_ID)
