"""RepairService: diagnose a replica, choose the cheapest safe path, run its plan.

A proposal is computed from one diagnosis; its plan's digest is what an approval binds to.
At the press the proposal is computed again from fresh state: a different digest refuses
the start and returns the difference. The run takes the same per-node lock as a rebuild
(the job store: one long action per replica, across restarts), executes exactly the plan's
steps through the :class:`~bot.services.plans.runner.PlanRunner` and the real
:class:`~bot.services.plans.executor.HostExecutor`, audits every step and undoes what was
done, newest first, on a failure or a cancel. The full path is the existing /rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from bot.config import AppConfig, ClusterConfig, NodeConfig
from bot.errors import NodeUnavailable, RebuildRefused, ReplbotError
from bot.models import AuditRecord, Outcome, RebuildJob, RebuildState
from bot.phrases import Phrase
from bot.ports import AuditLog, Clock, JobStore, Postgres, ShellConnector
from bot.services.plans.executor import HostExecutor
from bot.services.plans.model import Plan, Step, plan_diff, plan_digest
from bot.services.plans.runner import PlanResult, PlanRunner
from bot.services.rebuild.plan import TAG_RE, new_tag
from bot.services.rebuild.service import RebuildService
from bot.services.repair.choose import RewindVerdict, Throughput, choose
from bot.services.repair.diagnose import Diagnoser
from bot.services.repair.models import Diagnosis, PathName, RepairProgress, RepairProposal
from bot.services.repair.parameters import build_parameters
from bot.services.repair.resume import build_resume
from bot.services.repair.rewind import (
    RewindFacts,
    build_rewind_plan,
    dry_run_rewind,
    gather_rewind_facts,
    rewind_preconditions,
)

log = logging.getLogger(__name__)
SHOWN_KEPT = 64
LOG_TAIL_CHARS = 16_000
RepairSink = Callable[[RepairProgress], Awaitable[None]]
# Steps of the rewind path after which the data directory is no longer what it was: a
# failure from there on leaves the lock held (a human looks; nothing is deleted).
REWIND_CHANGES_DATA = frozenset({"rewind", "standby_config", "restore_files", "start", "streaming"})


async def _discard(_: RepairProgress) -> None:
    return None


def _unredacted(text: str) -> str:
    return text


class PlanChanged(RebuildRefused):
    """The plan computed at the press differs from the approved one; nothing ran."""

    def __init__(self, node: str, diff: list[str]) -> None:
        super().__init__(Phrase.of("error.repair.plan_changed", node=node))
        self.diff = diff


@dataclass
class _Run:
    job: RebuildJob
    plan: Plan
    sink: RepairSink
    task: asyncio.Task[None] | None = None
    log: str = ""  # the tail of what the streamed steps (pg_rewind) printed


class RepairService:
    """/repair: diagnosis, proposal, and the run of the resume and parameters paths."""

    def __init__(
        self,
        config: AppConfig,
        postgres: Postgres,
        shells: ShellConnector,
        jobs: JobStore,
        audit: AuditLog,
        clock: Clock,
        rebuild: RebuildService,
        redact: Callable[[str], str] = _unredacted,
    ) -> None:
        self._config = config
        self._pg = postgres
        self._shells = shells
        self._jobs = jobs
        self._audit = audit
        self._clock = clock
        self._rebuild = rebuild
        self._redact = redact
        self._settings = config.rebuild
        self._diagnoser = Diagnoser(postgres, shells, config.rebuild.command_timeout_s)
        self._runner = PlanRunner(clock)
        self._runs: dict[tuple[str, str], _Run] = {}
        self._shown: dict[str, Plan] = {}  # digest -> plan shown (for the diff at a press)
        self._shutting_down = False

    def running_jobs(self, cluster: str) -> dict[str, int]:
        """Replica name -> id of the repair this process runs on it now (for the monitor)."""
        return {node: run.job.id for (c, node), run in self._runs.items() if c == cluster}

    def resolve(
        self, node_name: str, cluster_name: str | None = None
    ) -> tuple[ClusterConfig, NodeConfig]:
        """The configured replica (the same keys as a rebuild are needed)."""
        return self._rebuild.resolve(node_name, cluster_name)

    async def diagnose(
        self,
        node_name: str,
        cluster_name: str | None = None,
        tag: str | None = None,
        or_full: bool = False,
        rewind_dry_run: bool = True,
    ) -> RepairProposal:
        """Diagnose, list the options and build the chosen plan (changes nothing).

        ``tag`` names the kept copies (pass the one shown with the approval so that the
        plan computed at the press is the same plan). ``or_full``: a rewind that fails goes
        on as a full copy (the approval says so), the rewound directory kept aside."""
        cluster, node = self.resolve(node_name, cluster_name)
        if tag is None or not TAG_RE.fullmatch(tag):
            tag = new_tag(self._clock.time())
        diag = await self._diagnoser.diagnose(cluster, node)
        full_bytes: int | None = None
        with contextlib.suppress(NodeUnavailable):
            full_bytes = await self._pg.total_database_size(cluster.primary)
        facts: RewindFacts | None = None
        rewind: RewindVerdict | None = None
        if diag.divergence is not None:
            # Another timeline than the primary's: read both histories for the real answer
            # (behind on the primary's history, or diverged at a fork point).
            facts, rewind = await self._assess_rewind(cluster, node, diag, rewind_dry_run)
            if facts is not None:
                diag = replace(diag, divergence=facts.divergence)
        options, chosen = choose(diag, full_bytes, Throughput(), rewind)
        plan: Plan | None = None
        if chosen is PathName.RESUME:
            plan = build_resume(diag, cluster, node, self._settings, tag)
        elif chosen is PathName.PARAMETERS:
            plan = build_parameters(diag, cluster, node, self._settings, tag)
        elif chosen is PathName.REWIND and facts is not None:
            name = diag.application_name or node.application_name or node.name
            plan = build_rewind_plan(cluster, node, facts, tag, name, or_full)
        if plan is not None:
            while len(self._shown) >= SHOWN_KEPT:
                self._shown.pop(next(iter(self._shown)))
            self._shown[plan_digest(plan)] = plan
        return RepairProposal(
            diagnosis=diag,
            options=options,
            chosen=chosen,
            plan=plan,
            digest=plan_digest(plan) if plan is not None else "",
            nothing_to_do=diag.streaming,
            tag=tag,
        )

    async def _assess_rewind(
        self, cluster: ClusterConfig, node: NodeConfig, diag: Diagnosis, dry_run: bool = True
    ) -> tuple[RewindFacts | None, RewindVerdict]:
        """Facts for the rewind path and its verdict: every precondition, then (on a stopped
        target) ``pg_rewind --dry-run`` for the bytes it would copy. Read-only."""
        timeout = self._settings.command_timeout_s
        try:
            shell = await self._shells.connect(node)
        except ReplbotError as exc:
            return None, RewindVerdict(False, "unreachable", detail=exc.user_message)
        try:
            facts = await gather_rewind_facts(self._pg, shell, cluster, node, timeout)
            div = facts.divergence
            if div is None:
                return facts, RewindVerdict(False, "not_diverged")
            if not div.rewindable:
                return facts, RewindVerdict(False, f"divergence_{div.kind}")
            failed = next((p for p in rewind_preconditions(facts, node) if not p.ok), None)
            if failed is not None:
                values = ", ".join(f"{k}={v}" for k, v in failed.values)
                return facts, RewindVerdict(False, failed.reason, detail=values)
            if facts.target.running:
                return facts, RewindVerdict(True, "target_running")  # no dry run on a live server
            if not dry_run:  # at the press: the plan runs pg_rewind --dry-run as its own step
                return facts, RewindVerdict(True, "dry_run_in_plan")
            name = diag.application_name or node.application_name or node.name
            dry = await dry_run_rewind(shell, node, name, timeout)
            if not dry.ok:
                return facts, RewindVerdict(False, "dry_run_failed", detail=dry.tail)
            return facts, RewindVerdict(True, "dry_run_ok", dry.copy_bytes)
        except ReplbotError as exc:
            return None, RewindVerdict(False, "facts_unreadable", detail=exc.user_message)
        finally:
            with contextlib.suppress(Exception):
                await shell.close()

    async def start(
        self,
        node_name: str,
        cluster_name: str,
        tag: str,
        digest: str,
        requested_by: int,
        confirmed_by: int | None,
        sink: RepairSink = _discard,
        or_full: bool = False,
    ) -> tuple[RebuildJob, Plan]:
        """Recompute the proposal; run it only if its plan is the approved one (``digest``).

        Raises :class:`PlanChanged` otherwise, with the difference to the plan shown (when
        this process showed it).
        """
        if self._shutting_down:
            raise RebuildRefused(Phrase.of("error.shutting_down"))
        cluster, node = self.resolve(node_name, cluster_name)
        fresh = await self.diagnose(node.name, cluster.name, tag, or_full, rewind_dry_run=False)
        if fresh.plan is None or fresh.digest != digest:
            shown = self._shown.get(digest)
            now = fresh.plan or (replace(shown, steps=(), facts=()) if shown else None)
            diff = plan_diff(shown, now) if shown and now else []
            raise PlanChanged(node.name, diff)
        plan = fresh.plan
        job = await self._jobs.create(
            cluster.name, node.name, requested_by, confirmed_by, "", "", "", kind=plan.kind
        )
        run = _Run(job, plan, sink)
        self._runs[(cluster.name, node.name)] = run
        await self._record(job, f"{plan.kind}.begin", Outcome.OK, f"{len(plan.steps)} steps")
        run.task = asyncio.create_task(
            self._execute(run, cluster, node), name=f"repair-{node.name}"
        )
        return job, plan

    async def wait(self, cluster: str, node: str) -> RebuildJob | None:
        """Wait for the node's running repair to end (tests, the demo); its last job row."""
        run = self._runs.get((cluster, node))
        if run is not None and run.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(run.task)
        return await self._jobs.latest(cluster, node)

    async def wait_all(self) -> None:
        """Until no repair of this process runs."""
        while tasks := [r.task for r in self._runs.values() if r.task is not None]:
            await asyncio.wait(tasks)

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel running repairs: each undoes what it did before its task ends."""
        self._shutting_down = True
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _execute(self, run: _Run, cluster: ClusterConfig, node: NodeConfig) -> None:
        plan, job = run.plan, run.job
        try:
            shell = await self._shells.connect(node)
        except Exception as exc:  # noqa: BLE001 - every failure ends the job visibly
            why = Phrase.of(
                "progress.cannot_connect",
                error=exc.phrase if isinstance(exc, ReplbotError) else str(exc),
            )
            await self._end(run, RebuildState.ROLLED_BACK, (why,), PlanResult())
            self._runs.pop((cluster.name, node.name), None)
            return
        executor = HostExecutor(self._pg, shell, cluster, node, self._settings.command_timeout_s)
        current: list[Step] = []

        async def on_step(index: int, step: Step) -> None:
            if current:
                await self._record(job, f"{plan.kind}.{current[-1].key}", Outcome.OK, "")
            current.append(step)
            await self._jobs.update(job.id, step=step.key)
            await self._record(job, f"{plan.kind}.{step.key}", Outcome.INTENT, str(step.title))
            progress = self._progress(run, step.key, index, "running")
            await run.sink(replace(progress, title=step.title))

        async def on_output(chunk: str) -> None:
            run.log = (run.log + chunk)[-LOG_TAIL_CHARS:]

        try:
            result = await self._runner.run(plan, executor, on_step, on_output)
            if current:
                outcome = Outcome.OK if result.ok else Outcome.FAILED
                reason = "" if result.ok else (result.failed.reason if result.failed else "")
                await self._record(job, f"{plan.kind}.{current[-1].key}", outcome, reason)
            if result.ok:
                done = Phrase.of("progress.repaired", node=node.name)
                await self._end(run, RebuildState.SUCCEEDED, (done,), result)
            else:
                changed = plan.kind == "repair.rewind" and bool(
                    REWIND_CHANGES_DATA & {*result.done, result.failed.key if result.failed else ""}
                )
                state = (
                    RebuildState.ROLLBACK_FAILED
                    if result.undo_failures or changed
                    else RebuildState.ROLLED_BACK
                )
                if result.cancelled:
                    why = Phrase.of("progress.repair_cancelled")
                elif result.failed:
                    failed = result.failed
                    why = Phrase.of(
                        "progress.step_error", step=failed.key, error=failed.reason_phrase
                    )
                else:
                    why = Phrase.of("progress.repair_failed")
                await self._end(run, state, (why,), result, executor.last_seen)
        finally:
            with contextlib.suppress(Exception):
                await shell.close()
            self._runs.pop((cluster.name, node.name), None)

    async def _end(
        self,
        run: _Run,
        state: RebuildState,
        parts: tuple[Phrase, ...],
        result: PlanResult,
        seen: tuple[Phrase, ...] = (),
    ) -> None:
        output = result.failed.output if result.failed else ""
        if seen and not result.ok:
            parts = (*parts, Phrase.of("progress.seen"), *seen)
        undo_notes = tuple(
            Phrase.of("progress.step_error", step=f.key, error=f.reason_phrase)
            for f in result.undo_failures
        )
        if undo_notes:
            parts = (*parts, Phrase.of("progress.undo_failed"), *undo_notes)
        said = tuple(p.map_text(self._redact) for p in parts)
        full = self._redact("; ".join(str(p) for p in said))
        run.job = await self._jobs.update(run.job.id, state=state, detail=full)
        outcome = Outcome.OK if state is RebuildState.SUCCEEDED else Outcome.FAILED
        await self._record(run.job, f"{run.plan.kind}.finish", outcome, f"{state.value}: {full}")
        progress = self._progress(
            run,
            run.job.step,
            len(result.done),
            state.value,
            detail=full,
            output=self._redact(output),
            undone=tuple(result.undone),
        )
        progress = replace(progress, log_tail=self._redact(run.log), said=said)
        with contextlib.suppress(Exception):
            await run.sink(progress)

    def _progress(
        self,
        run: _Run,
        step: str,
        index: int,
        state: str,
        detail: str = "",
        output: str = "",
        undone: tuple[str, ...] = (),
    ) -> RepairProgress:
        return RepairProgress(
            job_id=run.job.id,
            cluster=run.job.cluster,
            node=run.job.node,
            kind=run.plan.kind,
            step=step,
            step_index=index,
            step_count=len(run.plan.steps),
            state=state,
            detail=detail,
            output=output,
            undone=undone,
            keeps=run.plan.keeps,
        )

    async def _record(self, job: RebuildJob, command: str, outcome: Outcome, reason: str) -> None:
        try:
            await self._audit.append(
                AuditRecord(
                    user_id=job.requested_by,
                    user_name=f"repair#{job.id}",
                    chat_id=None,
                    command=command,
                    args=f"{job.cluster}/{job.node}",
                    outcome=outcome,
                    reason=self._redact(reason)[:500],
                    duration_ms=int((self._clock.time() - job.started_at) * 1000),
                )
            )
        except Exception:
            log.exception("AUDIT WRITE FAILED for repair job %s", job.id)
