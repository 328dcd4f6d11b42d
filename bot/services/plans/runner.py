"""The one runner of plans: executes exactly the steps of a :class:`Plan`, in order.

The runner knows no PostgreSQL and no SSH: an :class:`Executor` (given by the service that
owns the change) carries each action out. The runner decides only what happens next:

* an action fails (a remote exit code outside ``ok_exits``, an error, a :class:`Wait` whose
  probe never held) → the steps done so far are undone, newest first, through their
  ``undo`` actions; an undo that fails is reported and the next one still runs (undos never
  delete: they restore copies, start servers, drop only what the plan itself created);
  once a step marked ``irreversible`` has begun, the steps before it are not undone;
* a cancellation while a step runs → the same undo, then the result says "cancelled"; a
  cancellation during the undo is deferred until the undo is complete.

Waits poll through the :class:`~bot.ports.Clock`, so the whole runner runs on fakes in
milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.errors import ReplbotError
from bot.models import CommandResult
from bot.phrases import Phrase, Value
from bot.ports import Clock
from bot.services.plans.model import (
    Action,
    FileEdit,
    Plan,
    RemoteCommand,
    SlotChange,
    Sql,
    Step,
    Wait,
)

log = logging.getLogger(__name__)
OutputSink = Callable[[str], Awaitable[None]]


class Executor(Protocol):
    """Carries out the actions of one plan on one replica (and its primary)."""

    async def remote(self, action: RemoteCommand, on_output: OutputSink) -> CommandResult:
        """Run the command (streamed when ``action.stream``); never raise for an exit code."""
        ...

    async def sql(self, action: Sql) -> None:
        """Execute the statement with its parameters; raise ReplbotError when refused."""
        ...

    async def probe(self, action: Wait) -> bool:
        """Check the waited-for condition once."""
        ...

    async def edit(self, action: FileEdit) -> None:
        """Keep the original file as ``backup_path`` (unless it exists), then write ``content``."""
        ...

    async def slot(self, action: SlotChange) -> None:
        """Create, drop or copy the slot on the primary (idempotent, see SlotOp)."""
        ...


class StepFailed(ReplbotError):
    """One action of a plan failed; ``output`` is the tail of what it printed."""

    def __init__(
        self, key: str, reason: Value, output: str = "", exit_status: int | None = None
    ) -> None:
        super().__init__(Phrase.of("error.step_failed", step=key, reason=reason))
        self.user_message = f"{key}: {reason}"  # as job details held it (``step: reason``)
        self.key = key
        self.reason = str(reason)
        self.reason_phrase = reason
        self.output = output
        self.exit_status = exit_status  # of a remote command outside its ok_exits


@dataclass
class PlanResult:
    """How a run ended: ``failed`` is None on success; ``undone`` lists undone step keys."""

    done: list[str] = field(default_factory=list)
    failed: StepFailed | None = None
    cancelled: bool = False
    undone: list[str] = field(default_factory=list)
    undo_failures: list[StepFailed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every step ran."""
        return self.failed is None and not self.cancelled


StepHook = Callable[[int, Step], Awaitable[None]]


async def _no_hook(index: int, step: Step) -> None:
    return None


async def _no_output(chunk: str) -> None:
    return None


class PlanRunner:
    """Runs plans through an executor; see the module docstring for the failure rules."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def run(
        self,
        plan: Plan,
        executor: Executor,
        on_step: StepHook = _no_hook,
        on_output: OutputSink = _no_output,
        undo_on_failure: bool = True,
    ) -> PlanResult:
        """Execute ``plan``; on failure or cancellation undo what was done (newest first)."""
        result = PlanResult()
        done_steps: list[Step] = []
        try:
            for index, step in enumerate(plan.steps):
                await on_step(index, step)
                if step.irreversible:
                    done_steps.clear()  # from here on, what came before is not undone
                await self.execute(step.key, step.action, executor, on_output)
                done_steps.append(step)
                result.done.append(step.key)
            return result
        except asyncio.CancelledError:
            result.cancelled = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except StepFailed as exc:
            result.failed = exc
        except ReplbotError as exc:
            key = plan.steps[len(result.done)].key
            result.failed = StepFailed(key, exc.phrase)
        if undo_on_failure:
            await self._shielded(self._undo(done_steps, executor, result))
        return result

    async def execute(
        self, key: str, action: Action, executor: Executor, on_output: OutputSink = _no_output
    ) -> None:
        """Carry out one action; raise :class:`StepFailed` when it did not succeed."""
        if isinstance(action, RemoteCommand):
            outcome = await executor.remote(action, on_output)
            if outcome.exit_status not in action.ok_exits:
                raise StepFailed(
                    key,
                    f"exit status {outcome.exit_status}",  # as the process reports it: a value
                    _tail(outcome.stderr or outcome.stdout),
                    outcome.exit_status,
                )
        elif isinstance(action, Sql):
            await executor.sql(action)
        elif isinstance(action, Wait):
            await self._wait(key, action, executor)
        elif isinstance(action, SlotChange):
            await executor.slot(action)
        else:
            await executor.edit(action)

    async def _wait(self, key: str, action: Wait, executor: Executor) -> None:
        deadline = self._clock.monotonic() + action.timeout_s
        while True:
            if await executor.probe(action):
                return
            if self._clock.monotonic() >= deadline:
                raise StepFailed(
                    key,
                    Phrase.of(
                        "error.wait.not_reached",
                        probe=action.probe.value,
                        timeout_s=action.timeout_s,
                    ),
                )
            await self._clock.sleep(action.interval_s)

    async def _undo(self, done: list[Step], executor: Executor, result: PlanResult) -> None:
        for step in reversed(done):
            if step.undo is None:
                continue
            try:
                await self.execute(f"undo {step.key}", step.undo, executor)
                result.undone.append(step.key)
            except ReplbotError as exc:
                failure = exc if isinstance(exc, StepFailed) else StepFailed(step.key, exc.phrase)
                log.warning("undo of %s failed: %s", step.key, failure.user_message)
                result.undo_failures.append(failure)

    @staticmethod
    async def _shielded(work: Awaitable[None]) -> None:
        """Finish ``work`` even if the task is cancelled meanwhile; re-raise that cancel after."""
        task = asyncio.ensure_future(work)
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True
        task.result()
        if cancelled:
            raise asyncio.CancelledError


def _tail(text: str, lines: int = 12) -> str:
    kept = [line.rstrip("\r") for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    return "\n".join(kept[-lines:])
