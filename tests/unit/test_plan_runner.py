"""The plan runner on a fake executor: order, failures, undo, waits, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import NodeUnavailable
from bot.models import CommandResult
from bot.phrases import Phrase
from bot.services.plans.model import (
    FileEdit,
    Plan,
    Probe,
    RemoteCommand,
    SlotChange,
    SlotOp,
    Sql,
    SqlTarget,
    Step,
    Wait,
    describe,
    plan_diff,
    plan_digest,
)
from bot.services.plans.runner import OutputSink, PlanRunner
from tests.unit.fakes import FakeClock
from tests.unit.worded import english


class FakeExecutor:
    """Records every action; exit codes, SQL failures and probe answers are scripted."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.exits: dict[str, int] = {}
        self.sql_fails: set[str] = set()
        self.probe_true_after = 0
        self.probes = 0
        self.block: asyncio.Event | None = None

    async def remote(self, action: RemoteCommand, on_output: OutputSink) -> CommandResult:
        self.log.append(f"remote {action.command}")
        if self.block is not None and action.command == "slow":
            await self.block.wait()
        await on_output("out")
        return CommandResult(self.exits.get(action.command, 0), "", f"{action.command} failed")

    async def sql(self, action: Sql) -> None:
        self.log.append(f"sql {action.statement}")
        if action.statement in self.sql_fails:
            raise NodeUnavailable("pg1", "refused")

    async def probe(self, action: Wait) -> bool:
        self.probes += 1
        self.log.append(f"probe {action.probe.value}")
        return self.probes > self.probe_true_after

    async def edit(self, action: FileEdit) -> None:
        self.log.append(f"edit {action.path}")

    async def slot(self, action: SlotChange) -> None:
        self.log.append(f"slot {action.op.value} {action.slot}")


def _plan(*steps: Step) -> Plan:
    return Plan(kind="repair.resume", cluster="main", node="pg2", host="h", steps=steps)


STEPS = (
    Step("a", Phrase.of("step.a"), RemoteCommand("cmd-a"), undo=RemoteCommand("undo-a")),
    Step("b", Phrase.of("step.b"), Sql(SqlTarget.PRIMARY, "SELECT b", ("x",))),
    Step(
        "c",
        Phrase.of("step.c"),
        FileEdit("/f", "x = 1\n", "/f.orig"),
        undo=RemoteCommand("restore-c"),
    ),
    Step("d", Phrase.of("step.d"), RemoteCommand("cmd-d", ok_exits=(0, 3))),
    Step(
        "e",
        Phrase.of("step.e"),
        SlotChange(SlotOp.CREATE, "pg2"),
        undo=SlotChange(SlotOp.DROP, "pg2"),
    ),
)


async def test_runs_every_step_in_order() -> None:
    executor = FakeExecutor()
    executor.exits["cmd-d"] = 3
    result = await PlanRunner(FakeClock()).run(_plan(*STEPS), executor)
    assert result.ok and result.done == ["a", "b", "c", "d", "e"]
    assert executor.log == [
        "remote cmd-a",
        "sql SELECT b",
        "edit /f",
        "remote cmd-d",
        "slot create pg2",
    ]


async def test_a_failed_step_undoes_what_was_done_newest_first() -> None:
    executor = FakeExecutor()
    executor.exits["cmd-d"] = 1
    result = await PlanRunner(FakeClock()).run(_plan(*STEPS), executor)
    assert result.failed is not None and result.failed.key == "d"
    assert "cmd-d failed" in result.failed.output
    assert result.undone == ["c", "a"]
    assert executor.log[-2:] == ["remote restore-c", "remote undo-a"]


async def test_a_refused_statement_fails_its_step_and_an_undo_failure_does_not_stop_the_rest() -> (
    None
):
    executor = FakeExecutor()
    executor.sql_fails.add("SELECT b")
    executor.exits["undo-a"] = 1
    result = await PlanRunner(FakeClock()).run(_plan(*STEPS), executor)
    assert result.failed is not None and result.failed.key == "b"
    assert result.undone == [] and [f.key for f in result.undo_failures] == ["undo a"]


async def test_a_wait_polls_until_its_probe_holds() -> None:
    executor = FakeExecutor()
    executor.probe_true_after = 3
    clock = FakeClock()
    wait = Step(
        "w", Phrase.of("step.w"), Wait(Probe.STREAMING, timeout_s=10, interval_s=1, args=("s",))
    )
    result = await PlanRunner(clock).run(_plan(wait), executor)
    assert result.ok and executor.probes == 4 and clock.now == 1003.0


async def test_a_wait_times_out_and_fails() -> None:
    executor = FakeExecutor()
    executor.probe_true_after = 100
    wait = Step("w", Phrase.of("step.w"), Wait(Probe.SERVER_STOPPED, timeout_s=5, interval_s=1))
    result = await PlanRunner(FakeClock()).run(_plan(STEPS[0], wait), executor)
    assert result.failed is not None and result.failed.key == "w"
    assert "not reached in 5.0 s" in english(result.failed)
    assert result.undone == ["a"]


async def test_a_cancel_during_a_step_undoes_then_reports_cancelled() -> None:
    executor = FakeExecutor()
    executor.block = asyncio.Event()
    plan = _plan(STEPS[0], Step("slow", Phrase.of("step.slow"), RemoteCommand("slow")))
    task = asyncio.create_task(PlanRunner(FakeClock()).run(plan, executor))
    while "remote slow" not in executor.log:
        await asyncio.sleep(0)
    task.cancel()
    result = await task
    assert result.cancelled and not result.ok and result.undone == ["a"]


def test_the_digest_changes_with_any_step_or_fact() -> None:
    base = _plan(*STEPS)
    assert plan_digest(base) == plan_digest(_plan(*STEPS))
    changed = _plan(
        *STEPS[:3], Step("d", Phrase.of("step.d"), RemoteCommand("cmd-d --other")), STEPS[4]
    )
    assert plan_digest(changed) != plan_digest(base)
    with_fact = Plan(**{**base.__dict__, "facts": (("timeline", "2"),)})
    assert plan_digest(with_fact) != plan_digest(base)
    assert plan_diff(base, changed) == ["- d: cmd-d   # ok: exit 0/3", "+ d: cmd-d --other"]


@pytest.mark.parametrize(
    ("action", "text"),
    [
        (RemoteCommand("pg_ctl start"), "pg_ctl start"),
        (
            Sql(SqlTarget.REPLICA, "ALTER SYSTEM SET x = %s", ("8",)),
            "[replica] ALTER SYSTEM SET x = %s   -- params: 8",
        ),
        (
            Wait(Probe.SLOT_INACTIVE, 30, args=("pg2",)),
            "wait ≤ 30 s: slot pg2 inactive (pg_replication_slots.active = false)",
        ),
    ],
)
def test_describe_shows_the_action_as_it_runs(
    action: RemoteCommand | Sql | Wait, text: str
) -> None:
    assert describe(action) == text
