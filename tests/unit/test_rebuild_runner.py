"""The rebuild runner on fakes: endings, a foreign directory, and a cancel at every moment.

The host is :class:`tests.unit.fakes.FakeHost` (directories with identities, a server, the
slot it holds); time is the fake clock, so waits cost nothing. A "cancel at moment k" is
an admin's --cancel handled while the job is suspended at its k-th command, close or audit
write — including while a failure is being handled (finding 4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bot.errors import RebuildRefused
from bot.models import AuditRecord, Outcome, RebuildJob, RebuildState
from bot.services.rebuild.plan import build_plan, new_tag
from bot.services.rebuild.service import RebuildService
from tests.unit.fakes import (
    ADMIN_ID,
    FakeAuditLog,
    FakeClock,
    FakeHost,
    FakeJobStore,
    FakePostgres,
    Gate,
    rebuild_config,
)
from tests.unit.worded import english

OLD = FakeHost.OLD_ID


class GatedAudit(FakeAuditLog):
    """An audit log whose every append first passes the test's gate."""

    gate: Gate | None = None

    async def append(self, record: AuditRecord) -> None:
        if self.gate is not None:
            await self.gate(record.command)
        await super().append(record)


class Bed:
    """A RebuildService wired to fakes, with the plan of a rebuild of main/pg2."""

    def __init__(self) -> None:
        config = rebuild_config()
        cluster = next(c for c in config.clusters if c.name == "main")
        node = next(n for n in cluster.nodes if n.name == "pg2")
        self.clock = FakeClock()
        self.pg = FakePostgres.healthy()
        self.plan = build_plan(cluster, node, new_tag(self.clock.time()), False)
        self.host = FakeHost(self.pg, node, self.plan.old_dir, self.plan.failed_dir)
        self.jobs = FakeJobStore(self.clock)
        self.audit = GatedAudit(self.clock)
        self.service = RebuildService(config, self.pg, self.host, self.jobs, self.audit, self.clock)

    def gate_all(self, gate: Gate) -> None:
        self.host.gate = gate
        self.audit.gate = gate

    async def run(self) -> RebuildJob:
        await self.service.start(self.plan, ADMIN_ID, ADMIN_ID)
        job = await asyncio.wait_for(self.service.wait("main", "pg2"), 5)
        assert job is not None
        return job


def fail_new_start(bed: Bed) -> None:
    """The copy pg_basebackup makes (the next identity the host hands out) does not start."""
    bed.host.fail_start.add("8:200")


async def test_success_moves_only_the_data_directory_and_records_it_first() -> None:
    bed = Bed()
    job = await bed.run()
    assert job.state is RebuildState.SUCCEEDED, job
    assert job.moved_id == OLD
    assert bed.host.dirs == {bed.host.data: "8:200", bed.plan.old_dir: OLD}
    assert bed.host.moves == [(bed.host.data, bed.plan.old_dir)]
    assert [s.name for s in bed.pg.slot_rows["pg1"]] == ["pg2", "pg3", "old_slot"]


async def test_failed_start_rolls_back_and_keeps_the_new_copy() -> None:
    bed = Bed()
    fail_new_start(bed)
    job = await bed.run()
    assert job.state is RebuildState.ROLLED_BACK, job
    assert "progress.rollback.old_restored" in job.detail
    assert "progress.rollback.old_streams" in job.detail
    assert bed.host.dirs == {bed.host.data: OLD, bed.plan.failed_dir: "8:200"}
    assert bed.host.running_on == OLD
    assert await bed.jobs.holding_lock("main", "pg2") is None


async def test_a_directory_the_job_did_not_create_is_never_moved() -> None:
    bed = Bed()
    bed.host.dirs[bed.plan.old_dir] = "8:999"  # appeared after preflight, not ours
    job = await bed.run()
    assert job.state is RebuildState.ROLLED_BACK, job
    assert job.step == "move_aside"
    assert bed.host.moves == []
    assert bed.host.dirs == {bed.host.data: OLD, bed.plan.old_dir: "8:999"}
    assert bed.host.running_on == OLD


async def test_interrupted_job_with_a_foreign_old_directory_is_refused_untouched() -> None:
    bed = Bed()
    job = await bed.jobs.create(
        "main",
        "pg2",
        ADMIN_ID,
        ADMIN_ID,
        bed.plan.old_dir,
        bed.plan.failed_dir,
        bed.plan.rollback_slot,
    )
    # Interrupted before it recorded a move; a directory with its old name exists anyway.
    await bed.jobs.update(job.id, state=RebuildState.INTERRUPTED, step="move_aside")
    bed.host.dirs[bed.plan.old_dir] = "8:999"
    bed.host.running_on = None
    await bed.service.rollback("pg2", None, ADMIN_ID)
    job = await asyncio.wait_for(bed.service.wait("main", "pg2"), 5)
    assert job is not None and job.state is RebuildState.ROLLBACK_FAILED, job
    assert "progress.rollback.unrecorded_old" in job.detail
    assert bed.host.moves == []


def count_gate_calls(bed: Bed) -> list[str]:
    seen: list[str] = []

    async def gate(what: str) -> None:
        seen.append(what)

    bed.gate_all(gate)
    return seen


def cancel_when(bed: Bed, now: Callable[[int, str], bool], answers: list[str]) -> None:
    """When ``now(n, what)`` holds for the n-th gate call, an admin's --cancel (another task)
    is handled while the job waits there."""
    calls = 0

    async def gate(what: str) -> None:
        nonlocal calls
        calls += 1
        if answers or not now(calls, what):
            return
        handled = asyncio.Event()

        async def admin_cancels() -> None:
            try:
                await bed.service.cancel("pg2", None, by="ann")
                answers.append(f"accepted at {what}")
            except RebuildRefused as exc:
                answers.append(f"refused at {what}: {english(exc)}")
            finally:
                handled.set()

        _ = asyncio.get_running_loop().create_task(admin_cancels())
        await handled.wait()

    bed.gate_all(gate)


def cancel_at(bed: Bed, k: int, answers: list[str]) -> None:
    """The cancel is handled at the k-th gate call."""
    cancel_when(bed, lambda n, _: n == k, answers)


async def moments(failing: bool) -> int:
    bed = Bed()
    if failing:
        fail_new_start(bed)
    seen = count_gate_calls(bed)
    job = await bed.run()
    assert job.state is (RebuildState.ROLLED_BACK if failing else RebuildState.SUCCEEDED)
    return len(seen)


@pytest.mark.parametrize("failing", [False, True], ids=["succeeding", "start-fails"])
async def test_a_cancel_at_any_moment_ends_rolled_back_or_finished(failing: bool) -> None:
    total = await moments(failing)
    assert total > 10
    endings: dict[int, tuple[RebuildState, list[str]]] = {}
    for k in range(1, total + 1):
        bed = Bed()
        if failing:
            fail_new_start(bed)
        answers: list[str] = []
        cancel_at(bed, k, answers)
        job = await bed.run()
        assert answers, f"moment {k}: the cancel never ran"
        endings[k] = (job.state, answers)
        assert job.state in (RebuildState.ROLLED_BACK, RebuildState.SUCCEEDED), (k, job, answers)
        assert await bed.jobs.holding_lock("main", "pg2") is None, (k, job, answers)
        assert bed.host.running_on is not None, (k, job, answers)
        if job.state is RebuildState.ROLLED_BACK:
            assert bed.host.dirs[bed.host.data] == OLD, (k, job, bed.host.dirs)
            assert bed.plan.old_dir not in bed.host.dirs
        else:
            assert answers[0].startswith("refused"), (k, answers)
            assert bed.host.dirs[bed.plan.old_dir] == OLD
    # Cancels during the steps were accepted, and some landed while a failure was handled.
    assert any(a[0].startswith("accepted") for _, a in endings.values())
    if failing:
        handling = [a[0] for _, a in endings.values() if "rolling back" in a[0]]
        assert handling, endings


@pytest.mark.parametrize("where", ["close", "rebuild.start"])
async def test_cancel_while_the_failure_is_being_handled_still_rolls_back(where: str) -> None:
    """Finding 4 exactly: the start fails; the admin's cancel lands while the job closes its
    shell or audits the failure, before the rollback began."""
    bed = Bed()
    fail_new_start(bed)
    answers: list[str] = []

    def failing_now(_: int, what: str) -> bool:
        after_failure = bed.host.commands[-1:] == [bed.host.cmd.server_log_tail()]
        return after_failure and what == where

    cancel_when(bed, failing_now, answers)
    job = await bed.run()
    assert answers, where
    assert job.state is RebuildState.ROLLED_BACK, (job, answers)
    assert await bed.jobs.holding_lock("main", "pg2") is None
    assert bed.host.dirs[bed.host.data] == OLD
    assert bed.host.running_on == OLD
    rows = [r for r in bed.audit.records if r.command == "rebuild.finish"]
    assert [r.outcome for r in rows] == [Outcome.FAILED]


async def test_a_primary_down_during_rollback_still_puts_the_old_directory_back() -> None:
    from bot.errors import NodeUnavailable

    bed = Bed()
    fail_new_start(bed)
    starts = 0

    async def primary_dies_when_start_failed(command: str) -> None:
        nonlocal starts
        if command == "rebuild.start":
            starts += 1
            if starts == 2:  # the intent row, then the failure row: the rollback begins
                bed.pg.fail("snapshot", "pg1", NodeUnavailable("pg1", "connection refused"))

    bed.audit.gate = primary_dies_when_start_failed
    job = await bed.run()

    assert job.state is RebuildState.ROLLBACK_FAILED, job
    assert bed.host.dirs == {bed.host.data: OLD, bed.plan.failed_dir: "8:200"}
    assert bed.host.running_on == OLD
    assert "progress.rollback.old_restored" in job.detail
    assert "progress.rollback.primary_down" in job.detail
    holder = await bed.jobs.holding_lock("main", "pg2")
    assert holder is not None and holder.id == job.id
