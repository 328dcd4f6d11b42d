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
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from bot.config import AppConfig, ClusterConfig, NodeConfig
from bot.errors import (
    NodeUnavailable,
    RebuildRefused,
    RebuildStepFailed,
    RemoteError,
    ReplbotError,
    SlotAlreadyExists,
    SlotNotFound,
    UnknownNode,
)
from bot.models import (
    AuditRecord,
    BackupProgress,
    NodeRole,
    NodeSnapshot,
    Outcome,
    PlanStep,
    PreflightReport,
    RebuildJob,
    RebuildPlan,
    RebuildProgress,
    RebuildState,
    SlotInfo,
)
from bot.ports import AuditLog, Clock, JobStore, Postgres, RemoteShell, ShellConnector
from bot.services.rebuild.plan import PROGRESS_RE, Commands, build_plan, require_rebuild_config
from bot.services.rebuild.preflight import Preflight, tail

log = logging.getLogger(__name__)
ProgressSink = Callable[[RebuildProgress], Awaitable[None]]
SLOT_RELEASE_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.5


async def _discard(_: RebuildProgress) -> None:
    return None


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
    rolling_back: bool = False
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
    ) -> None:
        self._config = config
        self._pg = postgres
        self._shells = shells
        self._jobs = jobs
        self._audit = audit
        self._clock = clock
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
            raise UnknownNode(f"unknown node {node_name!r}")
        if len(matches) > 1:
            raise UnknownNode(f"{node_name} exists in several clusters; name the cluster too")
        cluster, node = matches[0]
        if node.role is NodeRole.PRIMARY:
            raise RebuildRefused(
                f"{node.name} is the primary of {cluster.name}; only replicas can be rebuilt"
            )
        require_rebuild_config(node)
        return cluster, node

    async def preflight(
        self, node_name: str, cluster_name: str | None = None, tag: str | None = None
    ) -> tuple[PreflightReport, RebuildPlan]:
        """Run every preflight check and build the plan (changes nothing).

        ``tag`` names the moved-aside directories; pass the one shown at confirmation time so
        the job uses exactly the directories the admin approved.
        """
        cluster, node = self.resolve(node_name, cluster_name)
        if tag is None or not re.fullmatch(r"[0-9]{8}T[0-9]{6}", tag):
            tag = datetime.fromtimestamp(self._clock.time(), UTC).strftime("%Y%m%dT%H%M%S")
        report = await self._preflight.run(cluster, node, tag)
        plan = build_plan(cluster, node, tag, report.slot_missing)
        return report, plan

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
            raise RebuildRefused("the bot is shutting down")
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
            raise RebuildRefused(f"no rebuild of {node.name} is running")
        if run.rolling_back:
            raise RebuildRefused(
                f"rebuild of {node.name} is rolling back; that cannot be cancelled"
            )
        if run.cancelled_by is not None:
            raise RebuildRefused(f"rebuild of {node.name} is already being cancelled")
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
        cmd = Commands.for_job(run.node, run.plan.old_dir, run.plan.failed_dir)
        shell: RemoteShell | None = None
        try:
            shell = await self._shells.connect(run.node)
            for index, step in enumerate(run.plan.steps):
                await self._enter(run, step, index)
                await self._do(run, step, cmd, shell)
                run.done.add(step.key)
                await self._record(run.job, f"rebuild.{step.key}", Outcome.OK, step.title)
            await self._finish(
                run,
                RebuildState.SUCCEEDED,
                f"{run.node.name} streams again; old data kept in {cmd.old_dir}",
            )
        except asyncio.CancelledError:
            if self._shutting_down and run.cancelled_by is None:
                await self._interrupted(run)
                raise
            await self._close(shell)
            shell = None
            reason = f"cancelled by {run.cancelled_by}"
            await self._record(run.job, f"rebuild.{run.progress.step}", Outcome.FAILED, reason)
            await self._roll_back(run, cmd, reason, "")
        except Exception as exc:
            if isinstance(exc, RebuildStepFailed):
                reason, output = exc.user_message, exc.output
            elif isinstance(exc, ReplbotError):
                reason, output = f"{run.progress.step}: {exc.user_message}", run.output
            else:
                log.exception("rebuild of %s: unexpected error", run.node.name)
                reason, output = f"{run.progress.step}: internal error {type(exc).__name__}", ""
            await self._record(run.job, f"rebuild.{run.progress.step}", Outcome.FAILED, reason)
            await self._close(shell)
            shell = None
            await self._roll_back(run, cmd, reason, output)
        finally:
            await self._close(shell)
            self._runs.pop((run.cluster.name, run.node.name), None)

    async def _enter(self, run: _Run, step: PlanStep, index: int) -> None:
        run.job = await self._jobs.update(run.job.id, step=step.key)
        await self._emit(
            run,
            step=step.key,
            step_index=index + 1,
            detail=step.title,
            backup=None,
            rate_bytes_s=None,
            eta_s=None,
        )

    async def _emit(self, run: _Run, **changes: object) -> None:
        elapsed = self._clock.monotonic() - run.started
        run.progress = replace(run.progress, elapsed_s=elapsed, **changes)  # type: ignore[arg-type]
        try:
            await run.sink(run.progress)
        except Exception:
            log.warning("rebuild progress could not be delivered", exc_info=True)

    async def _do(self, run: _Run, step: PlanStep, cmd: Commands, shell: RemoteShell) -> None:
        primary = run.cluster.primary
        timeout = self._settings.command_timeout_s
        key = step.key
        if key == "create_slot":
            with contextlib.suppress(SlotAlreadyExists):
                await self._pg.create_physical_slot(primary, cmd.slot)
        elif key == "stop":
            result = await shell.run(cmd.stop(), timeout)
            if result.exit_status != 0:
                status = await shell.run(cmd.server_status(), timeout)
                if status.exit_status != 3:
                    raise RebuildStepFailed(
                        key, "the stop command failed", tail(result.stderr or result.stdout)
                    )
        elif key == "check_stopped":
            status = await shell.run(cmd.server_status(), timeout)
            if status.exit_status != 3:
                raise RebuildStepFailed(
                    key,
                    f"{run.node.name} is still running (pg_ctl status exit {status.exit_status})",
                    tail(status.stdout),
                )
        elif key == "slot_released":
            await self._wait_slot_inactive(primary, cmd.slot, key)
        elif key == "keep_wal":
            await self._keep_wal(run, cmd)
        elif key == "move_aside":
            result = await shell.run(cmd.move_aside(), timeout)
            if result.exit_status != 0:
                raise RebuildStepFailed(
                    key, f"could not move {cmd.data_dir} aside", tail(result.stderr)
                )
        elif key == "basebackup":
            await self._basebackup(run, cmd, shell)
        elif key == "restore_files":
            restore = cmd.restore_files()
            assert restore is not None
            result = await shell.run(restore, timeout)
            if result.exit_status != 0:
                raise RebuildStepFailed(key, "could not restore local files", tail(result.stderr))
        elif key == "start":
            result = await shell.run(cmd.start(), timeout)
            if result.exit_status != 0:
                log_tail = await shell.run(cmd.server_log_tail(), timeout)
                raise RebuildStepFailed(
                    key,
                    f"{run.node.name} did not start",
                    tail(log_tail.stdout or result.stderr or result.stdout, 12),
                )
        elif key == "verify":
            await self._verify(run, cmd, shell)
        elif key == "release_wal":
            with contextlib.suppress(SlotNotFound):
                await self._pg.drop_slot(primary, cmd.rollback_slot)
        else:  # pragma: no cover - plans only contain the keys above
            raise RebuildStepFailed(key, "unknown step")

    async def _slot(self, node: NodeConfig, name: str) -> SlotInfo | None:
        return next((s for s in (await self._pg.snapshot(node)).slots if s.name == name), None)

    async def _streams(
        self, cluster: ClusterConfig, node: NodeConfig, slot: str
    ) -> tuple[bool, str]:
        """Probe the replica and the primary once; (streams, what was seen)."""
        replica = await self._pg.snapshot(node)
        primary = await self._pg.snapshot(cluster.primary)
        return streaming_seen(replica, primary, slot)

    async def _wait_slot_inactive(self, primary: NodeConfig, slot: str, key: str) -> None:
        deadline = self._clock.monotonic() + SLOT_RELEASE_TIMEOUT_S
        while True:
            info = await self._slot(primary, slot)
            if info is None:
                raise RebuildStepFailed(key, f"slot {slot} disappeared from {primary.name}")
            if not info.active:
                return
            if self._clock.monotonic() > deadline:
                raise RebuildStepFailed(
                    key,
                    f"slot {slot} is still active for PID "
                    f"{info.active_pid}: another process uses it",
                )
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _keep_wal(self, run: _Run, cmd: Commands) -> None:
        primary = run.cluster.primary
        slot = await self._slot(primary, cmd.slot)
        if slot is None or slot.restart_lsn is None:
            run.job = await self._jobs.update(run.job.id, detail="slot reserves no WAL to keep")
            return
        stale = await self._slot(primary, cmd.rollback_slot)
        if stale is not None and not stale.active:
            await self._pg.drop_slot(primary, cmd.rollback_slot)
        await self._pg.copy_physical_slot(primary, cmd.slot, cmd.rollback_slot)

    async def _basebackup(self, run: _Run, cmd: Commands, shell: RemoteShell) -> None:
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

        result = await shell.stream(cmd.basebackup(), on_output, timeout=None)
        if result.exit_status != 0:
            raise RebuildStepFailed(
                "basebackup",
                f"pg_basebackup exited with {result.exit_status}",
                tail(result.stdout, 10),
            )

    async def _verify(self, run: _Run, cmd: Commands, shell: RemoteShell) -> None:
        deadline = self._clock.monotonic() + self._settings.verify_timeout_s
        seen = "no answer yet"
        while self._clock.monotonic() < deadline:
            try:
                streams, seen = await self._streams(run.cluster, run.node, cmd.slot)
                if streams:
                    return
            except NodeUnavailable as exc:
                seen = exc.reason
            await asyncio.sleep(POLL_INTERVAL_S)
        log_tail = await shell.run(cmd.server_log_tail(), self._settings.command_timeout_s)
        raise RebuildStepFailed(
            "verify",
            f"{run.node.name} does not stream after {self._settings.verify_timeout_s:g} s ({seen})",
            tail(log_tail.stdout, 12),
        )

    # --- endings -----------------------------------------------------------------------------

    async def _finish(self, run: _Run, state: RebuildState, detail: str, output: str = "") -> None:
        run.job = await self._jobs.update(run.job.id, state=state, detail=detail)
        outcome = Outcome.OK if state is RebuildState.SUCCEEDED else Outcome.FAILED
        await self._record(run.job, "rebuild.finish", outcome, f"{state.value}: {detail}")
        await self._emit(run, state=state, detail=detail, output=output)

    async def _interrupted(self, run: _Run) -> None:
        detail = f"bot stopped during step {run.progress.step}"
        run.progress = replace(run.progress, state=RebuildState.INTERRUPTED, detail=detail)
        with contextlib.suppress(Exception):
            run.job = await self._jobs.update(
                run.job.id, state=RebuildState.INTERRUPTED, detail=detail
            )
            await self._record(run.job, "rebuild.interrupted", Outcome.FAILED, detail)

    async def _roll_back(self, run: _Run, cmd: Commands, reason: str, output: str) -> None:
        run.rolling_back = True
        await self._emit(run, step="rollback", detail=f"rolling back: {reason}")
        try:
            note = await self._restore(run.cluster, run.node, cmd)
        except asyncio.CancelledError:
            # Only a shutdown cancels a rollback: keep the lock, the next start reports it.
            await self._interrupted(run)
            raise
        except Exception as exc:  # noqa: BLE001 - report every rollback failure to a human
            message = exc.user_message if isinstance(exc, ReplbotError) else repr(exc)
            log.error("rollback of %s failed: %s", run.node.name, message)
            await self._finish(
                run,
                RebuildState.ROLLBACK_FAILED,
                f"{reason}; ROLLBACK FAILED: {message}",
                output or getattr(exc, "output", ""),
            )
            return
        await self._finish(run, RebuildState.ROLLED_BACK, f"{reason}; {note}", output)

    async def _restore(self, cluster: ClusterConfig, node: NodeConfig, cmd: Commands) -> str:
        """Idempotent rollback from whatever state the host is in. Deletes nothing."""
        timeout = self._settings.command_timeout_s
        primary = cluster.primary
        shell = await self._shells.connect(node)
        notes: list[str] = []
        try:
            await shell.run(cmd.kill_leftover_basebackup(), timeout)
            leftover = (await shell.run(cmd.leftover_basebackup(), timeout)).stdout.split()
            if leftover:
                raise RebuildStepFailed(
                    "rollback", "pg_basebackup still running: PID " + ", ".join(leftover)
                )
            dirs = set((await shell.run(cmd.directories(), timeout)).stdout.split())
            if "old" in dirs:
                if (
                    "data" in dirs
                    and (await shell.run(cmd.server_status(), timeout)).exit_status == 0
                ):
                    await shell.run(cmd.stop(), timeout)
                    if (await shell.run(cmd.server_status(), timeout)).exit_status == 0:
                        raise RebuildStepFailed("rollback", "the new server does not stop")
                moved = await shell.run(cmd.put_back(), timeout)
                if moved.exit_status != 0:
                    raise RebuildStepFailed(
                        "rollback", "could not put the old directory back", tail(moved.stderr)
                    )
                notes.append(
                    f"old data directory restored (partial copy kept as {cmd.failed_dir})"
                    if "data" in dirs
                    else "old data directory restored"
                )
            elif "data" not in dirs:
                raise RebuildStepFailed(
                    "rollback", f"neither {cmd.data_dir} nor {cmd.old_dir} exists"
                )
            notes.append(await self._restore_slot(primary, cmd))
            if (await shell.run(cmd.server_status(), timeout)).exit_status != 0:
                started = await shell.run(cmd.start(), timeout)
                if started.exit_status != 0:
                    log_tail = await shell.run(cmd.server_log_tail(), timeout)
                    raise RebuildStepFailed(
                        "rollback",
                        f"the old {node.name} did not start",
                        tail(log_tail.stdout or started.stderr, 12),
                    )
            notes.append(await self._streams_note(cluster, node, cmd.slot))
        finally:
            await shell.close()
        return "; ".join(n for n in notes if n)

    async def _restore_slot(self, primary: NodeConfig, cmd: Commands) -> str:
        copy = await self._slot(primary, cmd.rollback_slot)
        if copy is None:
            return ""
        with contextlib.suppress(RebuildStepFailed):
            await self._wait_slot_inactive(primary, cmd.slot, "rollback")
        with contextlib.suppress(SlotNotFound):
            await self._pg.drop_slot(primary, cmd.slot)
        await self._pg.copy_physical_slot(primary, cmd.rollback_slot, cmd.slot)
        await self._pg.drop_slot(primary, cmd.rollback_slot)
        return f"slot {cmd.slot} restored to the old replica's position"

    async def _streams_note(self, cluster: ClusterConfig, node: NodeConfig, slot: str) -> str:
        deadline = self._clock.monotonic() + self._settings.verify_timeout_s
        while self._clock.monotonic() < deadline:
            with contextlib.suppress(NodeUnavailable):
                if (await self._streams(cluster, node, slot))[0]:
                    return f"the old {node.name} streams again"
            await asyncio.sleep(POLL_INTERVAL_S)
        return f"the old {node.name} is running but NOT streaming yet: check /status"

    # --- after a restart ---------------------------------------------------------------------

    async def recover(self) -> list[tuple[RebuildJob, str]]:
        """Mark jobs left running by a previous process as interrupted and describe each."""
        reports: list[tuple[RebuildJob, str]] = []
        for job in await self._jobs.in_state(RebuildState.RUNNING):
            job = await self._jobs.update(
                job.id,
                state=RebuildState.INTERRUPTED,
                detail=f"bot restarted during step {job.step}",
            )
            await self._record(job, "rebuild.interrupted", Outcome.FAILED, job.detail)
            reports.append((job, await self.inspect(job)))
        for job in await self._jobs.in_state(RebuildState.INTERRUPTED):
            if all(job.id != j.id for j, _ in reports):
                reports.append((job, await self.inspect(job)))
        return reports

    async def inspect(self, job: RebuildJob) -> str:
        """What the replica's host looks like now: leftover backup, directories, server."""
        try:
            _, node = self.resolve(job.node, job.cluster)
            cmd = self._commands_for(node, job)
            shell = await self._shells.connect(node)
        except ReplbotError as exc:
            return f"cannot inspect: {exc.user_message}"
        timeout = self._settings.command_timeout_s
        try:
            pids = (await shell.run(cmd.leftover_basebackup(), timeout)).stdout.split()
            dirs = (await shell.run(cmd.directories(), timeout)).stdout.split()
            running = (await shell.run(cmd.server_status(), timeout)).exit_status == 0
        except RemoteError as exc:
            return f"cannot inspect: {exc.user_message}"
        finally:
            await shell.close()
        names = {"data": str(cmd.data_dir), "old": str(cmd.old_dir), "failed": str(cmd.failed_dir)}
        present = ", ".join(names[d] for d in dirs if d in names) or "none"
        backup = f"pg_basebackup running (PID {', '.join(pids)})" if pids else "no pg_basebackup"
        server = "server running" if running else "server stopped"
        return f"interrupted in step {job.step}; {backup}; {server}; directories: {present}"

    async def rollback(
        self, node_name: str, cluster_name: str | None, by: int, sink: ProgressSink = _discard
    ) -> RebuildJob:
        """Roll back an interrupted (or failed-rollback) job; runs in a task like a rebuild."""
        cluster, node = self.resolve(node_name, cluster_name)
        job = await self._jobs.holding_lock(cluster.name, node.name)
        if job is None or job.state is RebuildState.RUNNING:
            raise RebuildRefused(f"no interrupted rebuild of {node.name} to roll back")
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
                await self._roll_back(run, cmd, "interrupted rebuild", "")
            finally:
                self._runs.pop((cluster.name, node.name), None)

        run.task = asyncio.create_task(roll(), name=f"rollback-{node.name}")
        return job

    async def abandon(self, node_name: str, cluster_name: str | None, by: int) -> RebuildJob:
        """Release the lock of an interrupted job after a human fixed things by hand."""
        cluster, node = self.resolve(node_name, cluster_name)
        job = await self._jobs.holding_lock(cluster.name, node.name)
        if job is None or job.state is RebuildState.RUNNING:
            raise RebuildRefused(f"no interrupted rebuild of {node.name} to abandon")
        job = await self._jobs.update(
            job.id, state=RebuildState.ABANDONED, detail=f"abandoned by {by}; {job.detail}"
        )
        await self._record(job, "rebuild.abandon", Outcome.OK, job.detail)
        return job

    async def cleanup_target(self, node_name: str, cluster_name: str | None) -> RebuildJob:
        """The succeeded job whose old directory may be removed (the replica must stream)."""
        cluster, node = self.resolve(node_name, cluster_name)
        job = await self._jobs.latest(cluster.name, node.name)
        if job is None or job.state is not RebuildState.SUCCEEDED:
            raise RebuildRefused(f"no succeeded rebuild of {node.name} with an old directory")
        if "old directory removed" in job.detail:
            raise RebuildRefused(f"the old directory of {node.name} was already removed")
        return job

    async def cleanup(self, node_name: str, cluster_name: str | None, by: int) -> str:
        """Remove the old data directory kept by the last successful rebuild."""
        job = await self.cleanup_target(node_name, cluster_name)
        cluster, node = self.resolve(node_name, cluster_name)
        assert node.slot is not None  # resolve() requires it
        streams, _ = await self._streams(cluster, node, node.slot)
        if not streams:
            raise RebuildRefused(f"{node.name} is not streaming; keeping {job.old_dir}")
        cmd = self._commands_for(node, job)
        shell = await self._shells.connect(node)
        try:
            result = await shell.run(cmd.remove_old(), self._settings.command_timeout_s)
        finally:
            await shell.close()
        if result.exit_status != 0:
            raise RebuildStepFailed(
                "cleanup", f"could not remove {job.old_dir}", tail(result.stderr)
            )
        await self._jobs.update(job.id, detail=f"{job.detail}; old directory removed by {by}")
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


def streaming_seen(replica: NodeSnapshot, primary: NodeSnapshot, slot: str) -> tuple[bool, str]:
    """Does the replica stream through ``slot``? Pure: decided on one probe of each side.

    The replica must be in recovery with its WAL receiver streaming, and the primary must
    show ``slot`` active. Returns the decision and what was seen (for the failure message).
    """
    receiver = replica.receiver
    status = receiver.status if receiver is not None else None
    info = next((s for s in primary.slots if s.name == slot), None)
    active = info is not None and info.active
    seen = f"receiver {status or 'not running'}, slot {'active' if active else 'inactive'}"
    return bool(replica.in_recovery) and status == "streaming" and active, seen
