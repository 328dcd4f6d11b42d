"""RebuildService: one rebuild job per replica, run as a task the service owns.

Execution follows the plan step by step, persisting each step; any failure or a cancel rolls
back: stop what was started, move the partial copy aside as ``.failed``, put the old data
directory back, restore the slot from its rollback copy (so the old replica finds its WAL),
start the old replica and check that it streams. Nothing is deleted on any failure path. A
bot shutdown interrupts the job (pg_basebackup dies with its PTY); the next start finds it,
marks it interrupted, inspects the host and offers the rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from bot.config import AppConfig, ClusterConfig, NodeConfig
from bot.errors import (
    NodeUnavailable,
    RebuildRefused,
    RebuildStepFailed,
    RemoteError,
    ReplbotError,
    UnknownNode,
)
from bot.models import (
    AuditRecord,
    BackupProgress,
    CheckItem,
    CheckLevel,
    NodeRole,
    Outcome,
    PreflightReport,
    RebuildJob,
    RebuildPlan,
    RebuildProgress,
    RebuildState,
    SlotInfo,
)
from bot.phrases import Phrase
from bot.ports import AuditLog, Clock, JobStore, Postgres, RemoteShell, ShellConnector
from bot.services.plans.executor import HostExecutor
from bot.services.plans.model import Step
from bot.services.plans.runner import OutputSink, PlanRunner, StepFailed
from bot.services.rebuild.plan import (
    DIRECTORY_EXISTS_EXIT,
    POLL_INTERVAL_S,
    PROGRESS_RE,
    SLOT_RELEASE_TIMEOUT_S,
    TAG_RE,
    Commands,
    build_plan,
    new_tag,
    parse_directories,
    require_rebuild_config,
    rollback_steps,
)
from bot.services.rebuild.preflight import Preflight, tail
from bot.services.rebuild.rollback import HostState, RollbackAction, decide_rollback
from bot.services.rebuild.verify import judge_streaming

log = logging.getLogger(__name__)
ProgressSink = Callable[[RebuildProgress], Awaitable[None]]


async def _discard(_: RebuildProgress) -> None:
    return None


async def _no_output(_: str) -> None:
    return None


def _unredacted(text: str) -> str:
    return text


#: The key of the job detail part a --cleanup adds: a later --cleanup is refused on it.
OLD_REMOVED = "progress.old_removed"


def detail_text(parts: Sequence[Phrase]) -> str:
    """The language-neutral form of an ending's parts, as the job row and the audit keep it."""
    return "; ".join(str(part) for part in parts)


def old_dir_removed(job: RebuildJob) -> bool:
    """A --cleanup already removed the old directory of this job (its detail says so; a job
    row from before phrases says it in English)."""
    parts = job.detail.split("; ")
    return any(part.split(" ", 1)[0] == OLD_REMOVED for part in parts) or any(
        part.startswith("old directory removed by ") for part in parts
    )


@dataclass(frozen=True)
class Inspection:
    """What an interrupted job's host looks like, as phrases (``progress.inspect.*``);
    ``str()`` is the language-neutral form for the log."""

    parts: tuple[Phrase, ...]

    def __str__(self) -> str:
        return detail_text(self.parts)


class _Failed(RebuildStepFailed):
    """A rebuild or rollback step failed, with why as phrases (the chat words them)."""

    def __init__(self, step: str, parts: Sequence[Phrase], output: str = "") -> None:
        super().__init__(step, detail_text(parts), output)
        self.parts = tuple(parts)


class _Phase(enum.Enum):
    """Where a run is; only a run still in STEPS can be cancelled."""

    STEPS = "steps"
    FINISHING = "finishing"  # every step done: the job ends SUCCEEDED
    ROLLING_BACK = "rolling_back"  # a failure or cancel is being handled: it ends rolled back


@dataclass
class _Run:
    """In-memory state of a running job."""

    job: RebuildJob
    plan: RebuildPlan
    cluster: ClusterConfig
    node: NodeConfig
    sink: ProgressSink
    started: float
    progress: RebuildProgress
    task: asyncio.Task[None] | None = None
    cancelled_by: str | None = None
    phase: _Phase = _Phase.STEPS
    done: set[str] = field(default_factory=set)
    output: str = ""


class RebuildService:
    """Preflight, plan, run, cancel, roll back and recover rebuilds of replicas."""

    def __init__(
        self,
        config: AppConfig,
        postgres: Postgres,
        shells: ShellConnector,
        jobs: JobStore,
        audit: AuditLog,
        clock: Clock,
        redact: Callable[[str], str] = _unredacted,
    ) -> None:
        """``redact`` masks secrets in every output tail and detail before it leaves the
        service (the chat shows them); the composition root passes the bot's Redactor."""
        self._config = config
        self._redact = redact
        self._pg = postgres
        self._shells = shells
        self._jobs = jobs
        self._audit = audit
        self._clock = clock
        self._runner = PlanRunner(clock)
        self._settings = config.rebuild
        self._preflight = Preflight(postgres, shells, jobs, config.rebuild)
        self._runs: dict[tuple[str, str], _Run] = {}
        self._shutting_down = False

    # --- lookup and preflight -----------------------------------------------------------------

    def resolve(
        self, node_name: str, cluster_name: str | None = None
    ) -> tuple[ClusterConfig, NodeConfig]:
        """The configured replica ``node_name``; refuse the primary and unknown names."""
        matches = [
            (c, n)
            for c in self._config.clusters
            if cluster_name is None or c.name == cluster_name
            for n in c.nodes
            if n.name == node_name
        ]
        if not matches:
            raise UnknownNode(Phrase.of("error.node.unknown", node=node_name))
        if len(matches) > 1:
            raise UnknownNode(Phrase.of("error.node.ambiguous", node=node_name))
        cluster, node = matches[0]
        if node.role is NodeRole.PRIMARY:
            raise RebuildRefused(
                Phrase.of("error.rebuild.primary", node=node.name, cluster=cluster.name)
            )
        require_rebuild_config(node)
        return cluster, node

    async def preflight(
        self,
        node_name: str,
        cluster_name: str | None = None,
        tag: str | None = None,
        previous_job: int | None = None,
    ) -> tuple[PreflightReport, RebuildPlan]:
        """Run every preflight check and build the plan (changes nothing).

        ``tag`` names the moved-aside directories (a timestamp and a random token: two plans
        never share them); pass the one shown at confirmation time so the job uses exactly
        the directories the admin approved. ``previous_job`` is the plan's own
        ``previous_job`` from confirmation time: if another job of the node ran since, the
        confirmation is stale and the report fails.
        """
        cluster, node = self.resolve(node_name, cluster_name)
        if tag is None or not TAG_RE.fullmatch(tag):
            tag = new_tag(self._clock.time())
        latest = await self._jobs.latest(cluster.name, node.name)
        latest_id = latest.id if latest is not None else 0
        report = await self._preflight.run(cluster, node, tag)
        items = tuple(
            replace(
                i,
                detail=self._redact_phrase(i.detail),
                fix=self._redact_phrase(i.fix) if i.fix is not None else None,
                notes=tuple(self._redact_phrase(n) for n in i.notes),
            )
            for i in report.items
        )
        if previous_job is not None and latest is not None and previous_job != latest_id:
            stale = CheckItem(
                node.name,
                "confirmation",
                CheckLevel.FAIL,
                Phrase.of(
                    "preflight.confirmation.stale",
                    job=latest.id,
                    state=latest.state.value,
                    node=node.name,
                ),
                Phrase.of("preflight.confirmation.stale.fix"),
            )
            items = (stale, *items)
        report = replace(report, items=items)
        plan = build_plan(
            cluster,
            node,
            tag,
            report.slot_missing,
            latest_id,
            report.application_name,
            report.sync_state,
            self._settings.verify_timeout_s,
        )
        return report, plan

    def _redact_phrase(self, phrase: Phrase) -> Phrase:
        """The phrase with every text value redacted (a detail may quote command output)."""
        return phrase.map_text(self._redact)

    def running_jobs(self, cluster: str) -> dict[str, int]:
        """Replica name -> id of the job this process runs on it now (for the monitor)."""
        return {node: run.job.id for (c, node), run in self._runs.items() if c == cluster}

    def progress_of(self, cluster: str, node: str) -> RebuildProgress | None:
        """The latest progress of a running job of this process, if any."""
        run = self._runs.get((cluster, node))
        return run.progress if run else None

    async def lock_holder(self, cluster: str, node: str) -> RebuildJob | None:
        """The job holding the node's lock (running here, interrupted, or failed rollback)."""
        return await self._jobs.holding_lock(cluster, node)

    async def latest_job(self, cluster: str, node: str) -> RebuildJob | None:
        """The newest job of the node."""
        return await self._jobs.latest(cluster, node)

    # --- start, cancel, shutdown -------------------------------------------------------------

    async def start(
        self,
        plan: RebuildPlan,
        requested_by: int,
        confirmed_by: int | None,
        sink: ProgressSink = _discard,
    ) -> RebuildJob:
        """Take the node's lock and start the job in a task; returns at once."""
        if self._shutting_down:
            raise RebuildRefused(Phrase.of("error.shutting_down"))
        cluster, node = self.resolve(plan.node, plan.cluster)
        job = await self._jobs.create(
            cluster.name,
            node.name,
            requested_by,
            confirmed_by,
            plan.old_dir,
            plan.failed_dir,
            plan.rollback_slot,
        )
        now = self._clock.monotonic()
        run = _Run(
            job=job,
            plan=plan,
            cluster=cluster,
            node=node,
            sink=sink,
            started=now,
            progress=RebuildProgress(
                job.id,
                cluster.name,
                node.name,
                "starting",
                0,
                len(plan.steps),
                RebuildState.RUNNING,
                old_dir=plan.old_dir,
            ),
        )
        self._runs[(cluster.name, node.name)] = run
        await self._record(job, "rebuild.begin", Outcome.OK, f"{len(plan.steps)} steps")
        run.task = asyncio.create_task(self._execute(run), name=f"rebuild-{node.name}")
        return job

    async def cancel(self, node_name: str, cluster_name: str | None, by: str) -> RebuildJob:
        """Cancel a running job: pg_basebackup is stopped and the old replica restored."""
        cluster, node = self.resolve(node_name, cluster_name)
        run = self._runs.get((cluster.name, node.name))
        if run is None or run.task is None or run.task.done():
            raise RebuildRefused(Phrase.of("error.rebuild.not_running", node=node.name))
        if run.phase is _Phase.ROLLING_BACK:
            raise RebuildRefused(Phrase.of("error.rebuild.rolling_back", node=node.name))
        if run.phase is _Phase.FINISHING:
            raise RebuildRefused(Phrase.of("error.rebuild.finishing", node=node.name))
        if run.cancelled_by is not None:
            raise RebuildRefused(Phrase.of("error.rebuild.cancelling", node=node.name))
        run.cancelled_by = by
        run.task.cancel()
        return run.job

    async def wait(self, cluster: str, node: str) -> RebuildJob | None:
        """Wait for the running job of the node to finish (tests, benchmarks, shutdown)."""
        run = self._runs.get((cluster, node))
        if run is not None and run.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(run.task)
        return await self._jobs.latest(cluster, node)

    async def wait_all(self) -> None:
        """Wait until no job of this process is running (the demo's --exec mode)."""
        while tasks := [r.task for r in self._runs.values() if r.task is not None]:
            await asyncio.wait(tasks)

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Interrupt running jobs (their state is kept for the next start)."""
        self._shutting_down = True
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # --- execution ---------------------------------------------------------------------------

    async def _execute(self, run: _Run) -> None:
        """Run the steps; then finish, or roll back whatever failed or was cancelled.

        The phase changes synchronously, before the next ``await``: a cancel (which can only
        land at an ``await``) either hits a step — and is rolled back — or finds the run
        already finishing or rolling back and is refused. Only a shutdown interrupts the
        ending, and then the job is left INTERRUPTED with its lock, ready for --rollback.
        """
        cmd = Commands.for_job(
            run.node, run.plan.old_dir, run.plan.failed_dir, run.plan.application_name
        )
        shell: RemoteShell | None = None
        failure: tuple[tuple[Phrase, ...], str] | None = None
        try:
            shell = await self._shells.connect(run.node)
            for index, step in enumerate(run.plan.steps):
                await self._enter(run, step, index)
                title = str(step.title)
                await self._record(run.job, f"rebuild.{step.key}", Outcome.INTENT, title)
                await self._do(run, step, cmd, shell)
                run.done.add(step.key)
                if index == len(run.plan.steps) - 1:
                    run.phase = _Phase.FINISHING
                await self._record(run.job, f"rebuild.{step.key}", Outcome.OK, title)
            run.phase = _Phase.FINISHING
        except asyncio.CancelledError:
            if self._shutting_down and run.cancelled_by is None:
                await self._close(shell)
                await self._interrupted(run)
                self._runs.pop((run.cluster.name, run.node.name), None)
                raise
            run.phase = _Phase.ROLLING_BACK
            _uncancel()
            failure = ((Phrase.of("progress.cancelled", by=run.cancelled_by or ""),), "")
        except Exception as exc:
            run.phase = _Phase.ROLLING_BACK
            step_key = run.progress.step
            reason: tuple[Phrase, ...]
            if isinstance(exc, _Failed):
                reason, output = exc.parts, exc.output
            elif isinstance(exc, ReplbotError):
                error = (
                    exc.reason_phrase
                    if isinstance(exc, StepFailed | RebuildStepFailed)
                    else exc.phrase
                )
                reason = (Phrase.of("progress.step_error", step=step_key, error=error),)
                output = exc.output if isinstance(exc, RebuildStepFailed) else run.output
            else:
                log.exception("rebuild of %s: unexpected error", run.node.name)
                error = type(exc).__name__
                reason, output = (Phrase.of("progress.internal", step=step_key, error=error),), ""
            failure = (reason, output)
        try:
            await self._close(shell)
            if failure is None:
                done = Phrase.of("progress.rebuilt", node=run.node.name, path=str(cmd.old_dir))
                await self._finish(run, RebuildState.SUCCEEDED, (done,))
            else:
                reason, output = failure
                why = self._redact(detail_text(reason))
                await self._record(run.job, f"rebuild.{run.progress.step}", Outcome.FAILED, why)
                await self._roll_back(run, cmd, reason, output)
        except asyncio.CancelledError:
            if run.job.state is RebuildState.RUNNING:
                await self._interrupted(run)
            raise
        finally:
            self._runs.pop((run.cluster.name, run.node.name), None)

    async def _enter(self, run: _Run, step: Step, index: int) -> None:
        run.job = await self._jobs.update(run.job.id, step=step.key)
        await self._emit(
            run,
            step=step.key,
            step_index=index + 1,
            title=step.title,
            said=(),
            detail=str(step.title),
            backup=None,
            rate_bytes_s=None,
            eta_s=None,
        )

    async def _emit(self, run: _Run, **changes: object) -> None:
        for key in ("detail", "output"):
            value = changes.get(key)
            if isinstance(value, str):
                changes[key] = self._redact(value)
        said = changes.get("said")
        if isinstance(said, tuple):
            changes["said"] = tuple(self._redacted(p) for p in said if isinstance(p, Phrase))
        elapsed = self._clock.monotonic() - run.started
        run.progress = replace(run.progress, elapsed_s=elapsed, **changes)  # type: ignore[arg-type]
        try:
            await run.sink(run.progress)
        except Exception:
            log.warning("rebuild progress could not be delivered", exc_info=True)

    async def _do(self, run: _Run, step: Step, cmd: Commands, shell: RemoteShell) -> None:
        """Run the step's own action through the plan runner; around three of them the
        service keeps its books: the identity of the directory it moves (recorded before the
        move), pg_basebackup's progress, and the server log when a start or verify fails."""
        executor = HostExecutor(
            self._pg, shell, run.cluster, run.node, self._settings.command_timeout_s
        )
        on_output: OutputSink = _no_output
        if step.key == "move_aside":
            # The rollback moves a directory back only if it is this one (same device and
            # inode), crash or not in between: so the identity is stored before the move.
            ident = await shell.run(cmd.data_dir_id(), self._settings.command_timeout_s)
            moved_id = ident.stdout.strip()
            if ident.exit_status != 0 or not moved_id:
                raise _Failed(
                    step.key,
                    (Phrase.of("progress.stat_failed", step=step.key, path=str(cmd.data_dir)),),
                    tail(ident.stderr or ident.stdout),
                )
            run.job = await self._jobs.update(run.job.id, moved_id=moved_id)
        elif step.key == "basebackup":
            on_output = self._progress_sink(run)
        try:
            await self._runner.execute(step.key, step.action, executor, on_output)
        except StepFailed as exc:
            output = exc.output
            if step.key == "basebackup":
                output = tail(run.output, 10)
            elif step.key in ("start", "verify"):
                log_tail = await shell.run(cmd.server_log_tail(), self._settings.command_timeout_s)
                output = tail(log_tail.stdout or exc.output, 12)
            raise _Failed(step.key, self._reason(run, step, exc, executor), output) from exc

    def _reason(
        self, run: _Run, step: Step, exc: StepFailed, executor: HostExecutor
    ) -> tuple[Phrase, ...]:
        """Why a step failed, as the rebuild puts it (``progress.failed.*``; a failed verify
        adds what it saw last, ``verify.*``)."""
        key = step.key
        if key == "verify":
            timeout = self._settings.verify_timeout_s
            name = run.node.name
            if executor.last_seen:
                head = Phrase.of("progress.failed.verify", step=key, node=name, timeout_s=timeout)
                return (head, *executor.last_seen)
            return (
                Phrase.of("progress.failed.verify_silent", step=key, node=name, timeout_s=timeout),
            )
        return (self._step_reason(run, step, exc),)

    def _step_reason(self, run: _Run, step: Step, exc: StepFailed) -> Phrase:
        key, name, status = step.key, run.node.name, exc.exit_status or 0
        if key == "stop":
            return Phrase.of("progress.failed.stop", step=key)
        if key == "slot_released":
            return Phrase.of("progress.failed.slot_active", step=key, slot=run.plan.slot)
        if key == "check_stopped":
            return Phrase.of("progress.failed.still_running", step=key, node=name, status=status)
        if key == "move_aside":
            return Phrase.of("progress.failed.move_aside", step=key, path=run.plan.data_dir)
        if key == "basebackup":
            return Phrase.of("progress.failed.basebackup", step=key, status=status)
        if key == "restore_files":
            return Phrase.of("progress.failed.restore_files", step=key)
        if key == "start":
            return Phrase.of("progress.failed.start", step=key, node=name)
        return Phrase.of("progress.step_error", step=key, error=exc.reason_phrase)

    async def _slot(self, node: NodeConfig, name: str) -> SlotInfo | None:
        return next((s for s in (await self._pg.snapshot(node)).slots if s.name == name), None)

    async def _streams(
        self, cluster: ClusterConfig, node: NodeConfig, slot: str
    ) -> tuple[bool, str]:
        """Probe the replica and the primary once; (streams, what was seen), any name."""
        replica = await self._pg.snapshot(node)
        primary = await self._pg.snapshot(cluster.primary)
        info = next((s for s in primary.slots if s.name == slot), None)
        verdict = judge_streaming(replica, info, primary.walsenders, "")
        return verdict.ok, verdict.seen_text

    async def _wait_slot_inactive(self, primary: NodeConfig, slot: str, key: str) -> None:
        deadline = self._clock.monotonic() + SLOT_RELEASE_TIMEOUT_S
        while True:
            info = await self._slot(primary, slot)
            if info is None:
                raise RebuildStepFailed(
                    key, Phrase.of("error.slot.disappeared", slot=slot, node=primary.name)
                )
            if not info.active:
                return
            if self._clock.monotonic() > deadline:
                raise RebuildStepFailed(
                    key,
                    Phrase.of("error.slot.still_active", slot=slot, pid=info.active_pid or "?"),
                )
            await self._clock.sleep(POLL_INTERVAL_S)

    def _progress_sink(self, run: _Run) -> OutputSink:
        """pg_basebackup's output -> progress (done/total kB, rate, ETA) and the job's output."""
        buffer = ""
        samples: list[tuple[float, int]] = []

        async def on_output(chunk: str) -> None:
            nonlocal buffer
            buffer += chunk
            run.output = (run.output + chunk)[-8000:]
            *lines, buffer = buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            latest: BackupProgress | None = None
            for line in lines:
                match = PROGRESS_RE.search(line)
                if match:
                    latest = BackupProgress(int(match[1]), int(match[2]), int(match[3]))
            if latest is None:
                return
            now = self._clock.monotonic()
            samples.append((now, latest.done_kb))
            del samples[:-20]
            rate = eta = None
            if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
                rate = (samples[-1][1] - samples[0][1]) * 1024 / (samples[-1][0] - samples[0][0])
                if rate > 0:
                    eta = max(0.0, (latest.total_kb - latest.done_kb) * 1024 / rate)
            await self._emit(run, backup=latest, rate_bytes_s=rate, eta_s=eta)

        return on_output

    # --- endings -----------------------------------------------------------------------------

    def _redacted(self, phrase: Phrase) -> Phrase:
        """The phrase with secrets masked in its text values (error texts, command output)."""
        return phrase.map_text(self._redact)

    async def _finish(
        self, run: _Run, state: RebuildState, parts: Sequence[Phrase], output: str = ""
    ) -> None:
        said = tuple(self._redacted(p) for p in parts)
        detail = self._redact(detail_text(said))
        run.job = await self._jobs.update(run.job.id, state=state, detail=detail)
        outcome = Outcome.OK if state is RebuildState.SUCCEEDED else Outcome.FAILED
        await self._record(run.job, "rebuild.finish", outcome, f"{state.value}: {detail}")
        await self._emit(run, state=state, detail=detail, said=said, output=output)

    async def _interrupted(self, run: _Run) -> None:
        said = (Phrase.of("progress.interrupted", step=run.progress.step),)
        detail = detail_text(said)
        run.progress = replace(
            run.progress, state=RebuildState.INTERRUPTED, detail=detail, said=said
        )
        with contextlib.suppress(Exception):
            run.job = await self._jobs.update(
                run.job.id, state=RebuildState.INTERRUPTED, detail=detail
            )
            await self._record(run.job, "rebuild.interrupted", Outcome.FAILED, detail)

    async def _roll_back(
        self, run: _Run, cmd: Commands, reason: Sequence[Phrase], output: str
    ) -> None:
        run.phase = _Phase.ROLLING_BACK
        rolling = (Phrase.of("progress.rolling_back"), *reason)
        await self._emit(
            run, step="rollback", title=None, said=rolling, detail=detail_text(rolling)
        )
        try:
            note = await self._restore(run.cluster, run.node, cmd, run.job.moved_id)
        except asyncio.CancelledError:
            # Only a shutdown cancels a rollback: keep the lock, the next start reports it.
            await self._interrupted(run)
            raise
        except Exception as exc:  # noqa: BLE001 - report every rollback failure to a human
            if isinstance(exc, _Failed):
                why = exc.parts
            elif isinstance(exc, ReplbotError):
                why = (Phrase.of("progress.step_error", step="rollback", error=exc.phrase),)
            else:
                why = (Phrase.of("progress.internal", step="rollback", error=repr(exc)),)
            log.error("rollback of %s failed: %s", run.node.name, detail_text(why))
            await self._finish(
                run,
                RebuildState.ROLLBACK_FAILED,
                (*reason, Phrase.of("progress.rollback_failed"), *why),
                output or getattr(exc, "output", ""),
            )
            return
        await self._finish(run, RebuildState.ROLLED_BACK, (*reason, *note), output)

    async def _restore(
        self, cluster: ClusterConfig, node: NodeConfig, cmd: Commands, moved_id: str
    ) -> tuple[Phrase, ...]:
        """Idempotent rollback from whatever state the host is in. Deletes nothing, and moves
        only the directory this job moved aside (``moved_id``): see :mod:`.rollback`. Returns
        what it did, as phrases."""
        timeout = self._settings.command_timeout_s
        primary = cluster.primary
        shell = await self._shells.connect(node)
        notes: list[Phrase] = []
        try:
            await shell.run(cmd.kill_leftover_basebackup(), timeout)
            leftover = (await shell.run(cmd.leftover_basebackup(), timeout)).stdout.split()
            if leftover:
                pids = ", ".join(leftover)
                raise _Failed("rollback", (Phrase.of("progress.rollback.leftover", pids=pids),))
            state, primary_down = await self._observe(shell, primary, cmd)
            decision = decide_rollback(state, moved_id)
            if decision.refusal is not None:
                raise _Failed("rollback", (decision.refusal,), self._dirs_text(cmd, state))
            executor = HostExecutor(self._pg, shell, cluster, node, timeout)
            for step in rollback_steps(decision.actions, cmd):
                try:
                    await self._runner.execute(step.key, step.action, executor)
                except StepFailed as exc:
                    output = exc.output
                    if step.key == "start_old":
                        log_tail = await shell.run(cmd.server_log_tail(), timeout)
                        output = tail(log_tail.stdout or exc.output, 12)
                    raise _Failed(
                        "rollback", (self._rollback_reason(step.key, exc, node),), output
                    ) from exc
            notes += self._rollback_notes(decision.actions, cmd)
            if primary_down is not None:
                # The directories are back and the old server runs; the slot copy could not be
                # looked at. Keep the lock: a later --rollback restores the slot (idempotent).
                done = notes or [Phrase.of("progress.rollback.dirs_unchanged")]
                down = Phrase.of(
                    "progress.rollback.primary_down",
                    reason=primary_down,
                    slot=cmd.slot,
                    node=node.name,
                )
                raise _Failed("rollback", (*done, down))
            notes.append(await self._streams_note(cluster, node, cmd.slot))
        finally:
            await shell.close()
        return tuple(notes)

    async def _observe(
        self, shell: RemoteShell, primary: NodeConfig, cmd: Commands
    ) -> tuple[HostState, str | None]:
        """The host state the rollback decision is made from, and why the primary could not
        be read (None when it answered): the directories are put back even then."""
        timeout = self._settings.command_timeout_s
        dirs = parse_directories((await shell.run(cmd.directories(), timeout)).stdout)
        running = (await shell.run(cmd.server_status(), timeout)).exit_status == 0
        primary_down: str | None = None
        try:
            copy = await self._slot(primary, cmd.rollback_slot)
        except NodeUnavailable as exc:
            copy, primary_down = None, exc.reason
        state = HostState(
            data_id=dirs.get("data"),
            old_id=dirs.get("old"),
            failed_id=dirs.get("failed"),
            running=running,
            slot_copy=copy is not None,
        )
        return state, primary_down

    @staticmethod
    def _dirs_text(cmd: Commands, state: HostState) -> str:
        present = [
            str(path)
            for path, ident in (
                (cmd.data_dir, state.data_id),
                (cmd.old_dir, state.old_id),
                (cmd.failed_dir, state.failed_id),
            )
            if ident is not None
        ]
        return "directories: " + (", ".join(present) or "none")

    @staticmethod
    def _rollback_reason(key: str, exc: StepFailed, node: NodeConfig) -> Phrase:
        """Why a rollback step failed, as the rebuild puts it (``progress.rollback.*``)."""
        exists = exc.exit_status == DIRECTORY_EXISTS_EXIT
        if key in ("stop_new", "check_new_stopped"):
            return Phrase.of("progress.rollback.new_not_stopped")
        if key == "set_aside_new":
            if exists:
                return Phrase.of("progress.rollback.set_aside_exists")
            return Phrase.of("progress.rollback.set_aside_failed")
        if key == "put_back_old":
            if exists:
                return Phrase.of("progress.rollback.put_back_exists")
            return Phrase.of("progress.rollback.put_back_failed")
        if key == "start_old":
            return Phrase.of("progress.rollback.old_not_started", node=node.name)
        return Phrase.of("progress.step_error", step=key, error=exc.reason_phrase)

    @staticmethod
    def _rollback_notes(actions: Sequence[RollbackAction], cmd: Commands) -> list[Phrase]:
        notes: list[Phrase] = []
        if RollbackAction.PUT_BACK_OLD in actions:
            notes.append(
                Phrase.of("progress.rollback.old_restored_kept", path=str(cmd.failed_dir))
                if RollbackAction.SET_ASIDE_NEW in actions
                else Phrase.of("progress.rollback.old_restored")
            )
        if RollbackAction.RESTORE_SLOT in actions:
            notes.append(Phrase.of("progress.rollback.slot_restored", slot=cmd.slot))
        return notes

    async def _streams_note(self, cluster: ClusterConfig, node: NodeConfig, slot: str) -> Phrase:
        deadline = self._clock.monotonic() + self._settings.verify_timeout_s
        while self._clock.monotonic() < deadline:
            with contextlib.suppress(NodeUnavailable):
                if (await self._streams(cluster, node, slot))[0]:
                    return Phrase.of("progress.rollback.old_streams", node=node.name)
            await self._clock.sleep(POLL_INTERVAL_S)
        return Phrase.of("progress.rollback.old_not_streaming", node=node.name)

    # --- after a restart ---------------------------------------------------------------------

    async def recover(self) -> list[tuple[RebuildJob, Inspection]]:
        """Mark jobs left running by a previous process as interrupted and describe each."""
        reports: list[tuple[RebuildJob, Inspection]] = []
        for job in await self._jobs.in_state(RebuildState.RUNNING):
            job = await self._jobs.update(
                job.id,
                state=RebuildState.INTERRUPTED,
                detail=str(Phrase.of("progress.restarted", step=job.step)),
            )
            await self._record(job, "rebuild.interrupted", Outcome.FAILED, job.detail)
            reports.append((job, await self.inspect(job)))
        for job in await self._jobs.in_state(RebuildState.INTERRUPTED):
            if all(job.id != j.id for j, _ in reports):
                reports.append((job, await self.inspect(job)))
        return reports

    async def inspect(self, job: RebuildJob) -> Inspection:
        """What the replica's host looks like now: leftover backup, directories, server."""
        return Inspection(tuple(self._redacted(p) for p in await self._inspect(job)))

    async def _inspect(self, job: RebuildJob) -> tuple[Phrase, ...]:
        try:
            _, node = self.resolve(job.node, job.cluster)
            cmd = self._commands_for(node, job)
            shell = await self._shells.connect(node)
        except ReplbotError as exc:
            return (Phrase.of("progress.inspect.failed", error=exc.phrase),)
        timeout = self._settings.command_timeout_s
        try:
            pids = (await shell.run(cmd.leftover_basebackup(), timeout)).stdout.split()
            dirs = parse_directories((await shell.run(cmd.directories(), timeout)).stdout)
            running = (await shell.run(cmd.server_status(), timeout)).exit_status == 0
        except RemoteError as exc:
            return (Phrase.of("progress.inspect.failed", error=exc.phrase),)
        finally:
            await shell.close()
        names = {"data": str(cmd.data_dir), "old": str(cmd.old_dir), "failed": str(cmd.failed_dir)}
        present = ", ".join(names[d] for d in dirs if d in names)
        return (
            Phrase.of("progress.inspect.step", step=job.step),
            Phrase.of("progress.inspect.backup", pids=", ".join(pids))
            if pids
            else Phrase.of("progress.inspect.no_backup"),
            Phrase.of("progress.inspect.running")
            if running
            else Phrase.of("progress.inspect.stopped"),
            Phrase.of("progress.inspect.dirs", dirs=present)
            if present
            else Phrase.of("progress.inspect.no_dirs"),
        )

    async def rollback(
        self, node_name: str, cluster_name: str | None, by: int, sink: ProgressSink = _discard
    ) -> RebuildJob:
        """Roll back an interrupted (or failed-rollback) job; runs in a task like a rebuild."""
        cluster, node = self.resolve(node_name, cluster_name)
        job = await self._jobs.holding_lock(cluster.name, node.name)
        if job is None or job.state is RebuildState.RUNNING:
            raise RebuildRefused(Phrase.of("error.rebuild.nothing_to_roll_back", node=node.name))
        if job.kind != "rebuild":
            raise RebuildRefused(
                Phrase.of("error.rebuild.not_a_rebuild", job=job.id, node=node.name, kind=job.kind)
            )
        cmd = self._commands_for(node, job)
        job = await self._jobs.update(job.id, state=RebuildState.RUNNING, step="rollback")
        plan = build_plan(cluster, node, job.old_dir.rsplit("-", 1)[-1], False)
        run = _Run(
            job=job,
            plan=plan,
            cluster=cluster,
            node=node,
            sink=sink,
            started=self._clock.monotonic(),
            phase=_Phase.ROLLING_BACK,
            progress=RebuildProgress(
                job.id,
                cluster.name,
                node.name,
                "rollback",
                0,
                0,
                RebuildState.RUNNING,
                old_dir=job.old_dir,
            ),
        )
        self._runs[(cluster.name, node.name)] = run
        await self._record(job, "rebuild.rollback", Outcome.OK, f"requested by {by}")

        async def roll() -> None:
            try:
                await self._roll_back(run, cmd, (Phrase.of("progress.interrupted_rebuild"),), "")
            finally:
                self._runs.pop((cluster.name, node.name), None)

        run.task = asyncio.create_task(roll(), name=f"rollback-{node.name}")
        return job

    async def abandon(self, node_name: str, cluster_name: str | None, by: int) -> RebuildJob:
        """Release the lock of an interrupted job after a human fixed things by hand."""
        cluster, node = self.resolve(node_name, cluster_name)
        job = await self._jobs.holding_lock(cluster.name, node.name)
        if job is None or job.state is RebuildState.RUNNING:
            raise RebuildRefused(Phrase.of("error.rebuild.nothing_to_abandon", node=node.name))
        job = await self._jobs.update(
            job.id,
            state=RebuildState.ABANDONED,
            detail=f"{Phrase.of('progress.abandoned', by=by)}; {job.detail}",
        )
        await self._record(job, "rebuild.abandon", Outcome.OK, job.detail)
        return job

    async def cleanup_target(self, node_name: str, cluster_name: str | None) -> RebuildJob:
        """The succeeded job whose old directory may be removed (the replica must stream)."""
        cluster, node = self.resolve(node_name, cluster_name)
        job = await self._jobs.latest(cluster.name, node.name)
        if job is None or job.state is not RebuildState.SUCCEEDED or job.kind != "rebuild":
            raise RebuildRefused(Phrase.of("error.rebuild.no_old_dir", node=node.name))
        if old_dir_removed(job):
            raise RebuildRefused(Phrase.of("error.rebuild.old_dir_removed", node=node.name))
        return job

    async def cleanup(
        self, node_name: str, cluster_name: str | None, by: int, old_dir: str | None = None
    ) -> str:
        """Remove the old data directory kept by the last successful rebuild.

        ``old_dir`` is the directory the confirmation showed: when a newer rebuild changed it
        meanwhile, nothing is removed.
        """
        job = await self.cleanup_target(node_name, cluster_name)
        if old_dir is not None and job.old_dir != old_dir:
            raise RebuildRefused(
                Phrase.of("error.rebuild.old_dir_changed", path=old_dir, node=job.node)
            )
        cluster, node = self.resolve(node_name, cluster_name)
        assert node.slot is not None  # resolve() requires it
        streams, _ = await self._streams(cluster, node, node.slot)
        if not streams:
            raise RebuildRefused(
                Phrase.of("error.rebuild.not_streaming", node=node.name, path=job.old_dir or "")
            )
        cmd = self._commands_for(node, job)
        shell = await self._shells.connect(node)
        try:
            await self._record(job, "rebuild.cleanup", Outcome.INTENT, f"removing {job.old_dir}")
            result = await shell.run(cmd.remove_old(), self._settings.command_timeout_s)
        finally:
            await shell.close()
        if result.exit_status != 0:
            raise RebuildStepFailed(
                "cleanup",
                Phrase.of("error.file.no_remove", path=job.old_dir or ""),
                self._redact(tail(result.stderr)),
            )
        removed = Phrase.of("progress.old_removed", by=by)
        await self._jobs.update(job.id, detail=f"{job.detail}; {removed}")
        await self._record(job, "rebuild.cleanup", Outcome.OK, f"removed {job.old_dir}")
        return job.old_dir

    # --- helpers -----------------------------------------------------------------------------

    def _commands_for(self, node: NodeConfig, job: RebuildJob) -> Commands:
        return Commands.for_job(node, job.old_dir, job.failed_dir)

    @staticmethod
    def tag_of(plan: RebuildPlan) -> str:
        """The timestamp tag in the plan's directory names."""
        return plan.old_dir.rsplit("-", 1)[-1]

    async def _record(self, job: RebuildJob, command: str, outcome: Outcome, reason: str) -> None:
        try:
            await self._audit.append(
                AuditRecord(
                    user_id=job.requested_by,
                    user_name=f"rebuild#{job.id}",
                    chat_id=None,
                    command=command,
                    args=f"{job.cluster}/{job.node}",
                    outcome=outcome,
                    reason=reason[:500],
                    duration_ms=int((self._clock.time() - job.started_at) * 1000),
                )
            )
        except Exception:
            log.exception("AUDIT WRITE FAILED for rebuild job %s", job.id)

    @staticmethod
    async def _close(shell: RemoteShell | None) -> None:
        if shell is not None:
            with contextlib.suppress(Exception):
                await shell.close()


def _uncancel() -> None:
    """Take back the cancel request we handled, so later timeouts of the task still work."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
