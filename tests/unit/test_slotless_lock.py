"""/attachslot and /detachslot take the per-node lock of /rebuild and /repair."""

from __future__ import annotations

from bot.errors import SlotChangeRefused
from bot.models import RebuildState
from bot.services.slotless import SlotlessService
from bot.services.slotview import SlotOverrides
from tests.unit.fakes import FakeClock, FakeJobStore, slot, walsender
from tests.unit.test_slotless_runner import CLUSTER, PlanPostgres, slotless_pg
from tests.unit.worded import raises_worded


async def test_attach_and_detach_are_refused_while_a_rebuild_holds_the_lock() -> None:
    clock = FakeClock()
    jobs = FakeJobStore(clock)
    rebuild = await jobs.create("main", "pg2", 1, 1, "", "", "")
    pg = slotless_pg()
    svc = SlotlessService((CLUSTER,), pg, SlotOverrides(), clock, 5, jobs=jobs)
    with raises_worded(SlotChangeRefused, f"already in progress \\(job {rebuild.id}, "):
        await svc.attach_plan("pg2", None, None)
    attached = PlanPostgres(
        walsenders={"pg1": [walsender(201, "pg2", "pg2")]},
        slot_rows={"pg1": [slot("pg2", True, 201)]},
    )
    svc = SlotlessService((CLUSTER,), attached, SlotOverrides(), clock, 5, jobs=jobs)
    with raises_worded(SlotChangeRefused, "rebuild of pg2 refused: already in progress"):
        await svc.detach_plan("pg2", None)
    assert pg.statements == [] and attached.statements == []


async def test_a_run_holds_the_lock_as_a_job_of_its_own_kind_and_ends_it() -> None:
    clock = FakeClock()
    jobs = FakeJobStore(clock)
    pg = slotless_pg()  # the fake replica never moves onto the slot: verify fails, undone
    svc = SlotlessService((CLUSTER,), pg, SlotOverrides(), clock, 5, jobs=jobs)
    planned = await svc.attach_plan("pg2", None, None)
    outcome = await svc.attach("pg2", None, None, planned.digest, requested_by=7)
    assert not outcome.ok
    (job,) = jobs.jobs.values()
    assert (job.kind, job.cluster, job.node, job.requested_by) == ("attachslot", "main", "pg2", 7)
    assert job.state is RebuildState.ROLLED_BACK
    assert await jobs.holding_lock("main", "pg2") is None
