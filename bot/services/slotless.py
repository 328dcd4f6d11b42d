"""Replicas without a replication slot: see the risk, and attach or detach a slot.

Without a slot the primary does not know what a replica has received: it removes WAL on its
own schedule (``wal_keep_size``, ``max_wal_size``, archiving), and a replica that falls behind
the oldest WAL still in the primary's ``pg_wal`` can only be rebuilt. With a slot the primary
keeps the WAL until the replica has it (and keeps it for ever for a replica that never comes
back, which is why :meth:`SlotlessService.detach` drops the slot of a retired replica).

* :func:`slotless_risk` — pure: is a configured replica unprotected, and how close is it to
  the oldest WAL the primary still has? Used by /status, /check and the monitor rule.
* :class:`SlotOverrides` — the bot's own record of a slot attached or detached from the chat,
  keyed by (cluster, node), applied over the configuration by every reader.
* :class:`SlotlessService` — ``/attachslot`` and ``/detachslot``: a typed
  :class:`~bot.services.plans.model.Plan` first (shown, hashed, confirmed), then the very steps
  of that plan run here, keyed by ``step.key``, until the generic plan runner takes over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from bot.config import ClusterConfig, NodeConfig
from bot.errors import (
    NodeUnavailable,
    RebuildRefused,
    RemoteError,
    SlotChangeRefused,
    UnknownNode,
)
from bot.models import (
    NodeRole,
    NodeSnapshot,
    RebuildState,
    SlotlessRisk,
    WalSender,
    basebackup_pids,
)
from bot.phrases import Phrase, Value
from bot.ports import Clock, JobStore, Postgres, RemoteShell, ShellConnector, SlotOverrideStore
from bot.services.plans.model import (
    FileEdit,
    Plan,
    Probe,
    RemoteCommand,
    Sql,
    SqlTarget,
    Step,
    Wait,
    plan_digest,
)
from bot.services.replication import match_sender, validate_slot_name
from bot.services.slotview import SlotOverrides, slotless_risk

VERIFY_TIMEOUT_S = 30.0
_POLL_S = 0.5
_RELOAD = "SELECT pg_catalog.pg_reload_conf()"


def replica_sender(
    cluster: ClusterConfig, replica: NodeConfig, primary: NodeSnapshot
) -> WalSender | None:
    """The walsender of ``replica`` on ``primary`` (base backups never count)."""
    backups = basebackup_pids(primary.walsenders)
    candidates = [s for s in primary.walsenders if s.pid not in backups]
    for other in cluster.replicas:
        sender = match_sender(other, candidates)
        if other.name == replica.name:
            return sender
        if sender is not None:
            candidates.remove(sender)
    return None


# --- fixing it ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotPlan:
    """A plan of /attachslot or /detachslot with what it was computed from."""

    plan: Plan
    slot: str
    risk: SlotlessRisk | None  # attach: the replica's margin now
    in_config: bool  # the configuration names this slot for the replica already

    @property
    def digest(self) -> str:
        """What a confirmation binds."""
        return plan_digest(self.plan)


@dataclass(frozen=True)
class SlotChangeOutcome:
    """What an /attachslot or /detachslot run did, step by step."""

    kind: str  # "attachslot" | "detachslot"
    cluster: str
    node: str
    slot: str
    done: tuple[str, ...]  # step keys that ran
    failed_step: str | None = None
    error: Value | None = None  # a Phrase of ours, or a server's text
    undone: tuple[str, ...] = ()  # undo actions that ran (step keys)
    undo_errors: tuple[Value, ...] = ()
    in_config: bool = True

    @property
    def ok(self) -> bool:
        """True when every step ran."""
        return self.failed_step is None


class SlotlessService:
    """Plans and runs /attachslot and /detachslot against one replica and its primary."""

    def __init__(
        self,
        clusters: Sequence[ClusterConfig],
        postgres: Postgres,
        overrides: SlotOverrides,
        clock: Clock,
        verify_timeout_s: float = VERIFY_TIMEOUT_S,
        shells: ShellConnector | None = None,
        command_timeout_s: float = 30.0,
        jobs: JobStore | None = None,
        store: SlotOverrideStore | None = None,
    ) -> None:
        """``shells`` reach a stopped replica's host (SSH, or local in the demo), to point it
        at the slot in its postgresql.auto.conf; without them a stopped replica is refused.
        ``jobs``: the per-node lock of /rebuild and /repair; a run holds it as a job of kind
        "attachslot" / "detachslot", and a node whose lock is held is refused. ``store``
        keeps what the bot records in ``overrides`` across a restart."""
        self._jobs = jobs
        self._store = store
        self._shells = shells
        self._command_timeout = command_timeout_s
        self._clusters = tuple(clusters)
        self._pg = postgres
        self._overrides = overrides
        self._clock = clock
        self._verify_timeout = verify_timeout_s

    @property
    def overrides(self) -> SlotOverrides:
        """The bot's record of slots it attached or detached."""
        return self._overrides

    def cluster_names(self) -> list[str]:
        """Configured cluster names."""
        return [c.name for c in self._clusters]

    def resolve(self, node: str, cluster: str | None) -> tuple[ClusterConfig, NodeConfig]:
        """The configured replica ``node`` (with the bot's slot overrides applied)."""
        matches = [
            (c, n)
            for c in self._clusters
            if cluster is None or c.name == cluster
            for n in c.nodes
            if n.name == node
        ]
        if not matches:
            if cluster:
                raise UnknownNode(Phrase.of("error.node.unknown_in", node=node, cluster=cluster))
            raise UnknownNode(Phrase.of("error.node.unknown", node=node))
        if len(matches) > 1:
            raise UnknownNode(Phrase.of("error.node.ambiguous", node=node))
        found, replica = matches[0]
        if replica.role is NodeRole.PRIMARY:
            raise SlotChangeRefused(
                Phrase.of("error.slotless.primary", node=replica.name, cluster=found.name)
            )
        applied = self._overrides.apply(found)
        node_now = applied.node(replica.name)
        assert node_now is not None
        return applied, node_now

    async def _state(
        self, cluster: ClusterConfig, replica: NodeConfig
    ) -> tuple[NodeSnapshot, WalSender | None, NodeSnapshot | None]:
        primary = await self._pg.snapshot(cluster.primary)
        if primary.in_recovery:
            raise SlotChangeRefused(
                Phrase.of(
                    "error.slotless.primary_in_recovery",
                    node=cluster.primary.name,
                    cluster=cluster.name,
                )
            )
        try:
            own: NodeSnapshot | None = await self._pg.snapshot(replica)
        except NodeUnavailable:
            own = None
        return primary, replica_sender(cluster, replica, primary), own

    async def _require_unlocked(self, cluster: ClusterConfig, replica: NodeConfig) -> None:
        """Refuse while a rebuild, repair or slot change of the node holds its lock."""
        holder = await self._jobs.holding_lock(cluster.name, replica.name) if self._jobs else None
        if holder is not None:
            raise SlotChangeRefused(
                Phrase.of(
                    "error.job.busy",
                    kind=holder.kind,
                    node=replica.name,
                    job=holder.id,
                    state=holder.state.value,
                    step=holder.step,
                )
            )

    async def _require_privileges(self, replica: NodeConfig) -> None:
        """Refuse before anything changes when the bot may not set primary_slot_name."""
        missing = await self._pg.missing_alter_system_privileges(replica, "primary_slot_name")
        if missing:
            raise SlotChangeRefused(
                Phrase.of(
                    "error.slotless.privileges", node=replica.name, missing=", ".join(missing)
                )
            )

    # --- /attachslot -------------------------------------------------------------------

    async def attach_plan(self, node: str, slot: str | None, cluster: str | None) -> SlotPlan:
        """Check the replica can get a slot now and return the plan; refuse otherwise."""
        found, replica = self.resolve(node, cluster)
        await self._require_unlocked(found, replica)
        original = _configured(self._clusters, found.name, replica.name)
        name = validate_slot_name(slot or original.slot or _slot_name_for(replica.name))
        primary, sender, own = await self._state(found, replica)
        if sender is not None and sender.slot_name is not None:
            raise SlotChangeRefused(
                Phrase.of("error.slotless.has_slot", node=replica.name, slot=sender.slot_name)
            )
        if any(s.name == name for s in primary.slots):
            raise SlotChangeRefused(
                Phrase.of("error.slotless.slot_exists", slot=name, node=found.primary.name)
            )
        if own is None or not own.ok:
            return await self._attach_stopped_plan(found, replica, name, original.slot == name)
        await self._require_privileges(replica)
        risk = slotless_risk(
            found.name, dataclasses.replace(replica, slot=None), primary, sender, own
        )
        if risk is not None and risk.lost:
            raise SlotChangeRefused(
                Phrase.of(
                    "error.slotless.wal_lost",
                    node=replica.name,
                    lsn=str(risk.replay_lsn),
                    primary=found.primary.name,
                    segment=str(risk.oldest_segment),
                )
            )
        steps = (
            _create_slot_step(found, name),
            Step(
                "set_primary_slot_name",
                Phrase.of("step.set_primary_slot_name", node=replica.name),
                Sql(SqlTarget.REPLICA, "ALTER SYSTEM SET primary_slot_name = %s", (name,)),
                undo=Sql(SqlTarget.REPLICA, "ALTER SYSTEM RESET primary_slot_name"),
            ),
            Step(
                "verify",
                Phrase.of("step.walsender_holds_slot", node=replica.name, slot=name),
                Wait(Probe.STREAMING, self._verify_timeout, _POLL_S, (name, replica.name, "")),
            ),
        )
        plan = Plan(
            kind="attachslot",
            cluster=found.name,
            node=replica.name,
            host=found.primary.name,
            steps=steps,
            keeps=(),
            facts=(("slot", name), ("replica_slot", "none"), ("wal_available", "yes")),
        )
        return SlotPlan(plan, name, risk, in_config=original.slot == name)

    async def _attach_stopped_plan(
        self, cluster: ClusterConfig, replica: NodeConfig, name: str, in_config: bool
    ) -> SlotPlan:
        """The replica does not answer: if it is stopped (``pg_ctl status``), create the slot
        and set ``primary_slot_name`` in its postgresql.auto.conf over the shell, keeping the
        original file; it uses the slot when it starts. Refused without shell access."""
        if self._shells is None or replica.data_dir is None or replica.pg_bin_dir is None:
            raise SlotChangeRefused(Phrase.of("error.slotless.stopped_no_shell", node=replica.name))
        data = str(replica.data_dir)
        status = f"{shlex.quote(str(replica.pg_bin_dir / 'pg_ctl'))} status -D {shlex.quote(data)}"
        path = str(replica.data_dir / "postgresql.auto.conf")
        shell = await self._connect(replica)
        try:
            probe = await shell.run(status, self._command_timeout)
            if probe.exit_status != 3:
                raise SlotChangeRefused(
                    Phrase.of(
                        "error.slotless.not_stopped", node=replica.name, status=probe.exit_status
                    )
                )
            current = await shell.run(f"cat -- {shlex.quote(path)}", self._command_timeout)
        finally:
            await shell.close()
        if current.exit_status != 0:
            raise SlotChangeRefused(
                Phrase.of("error.file.unreadable", path=path, output=current.stderr.strip()[-200:])
            )
        kept = [
            line
            for line in current.stdout.splitlines()
            if not line.strip().startswith("primary_slot_name")
        ]
        content = "\n".join([*kept, f"primary_slot_name = '{name}'"]) + "\n"
        tag = hashlib.sha256(current.stdout.encode()).hexdigest()[:8]
        backup = f"{path}.replbot-{tag}"
        steps = (
            Step(
                "check_stopped",
                Phrase.of("step.node_stopped", node=replica.name),
                RemoteCommand(status, ok_exits=(3,)),
            ),
            _create_slot_step(cluster, name),
            Step(
                "edit_auto_conf",
                Phrase.of("step.slot_name_in_auto_conf", node=replica.name),
                FileEdit(path, content, backup),
                undo=RemoteCommand(f"cp -p -- {shlex.quote(backup)} {shlex.quote(path)}"),
            ),
        )
        plan = Plan(
            kind="attachslot",
            cluster=cluster.name,
            node=replica.name,
            host=cluster.primary.name,
            steps=steps,
            keeps=(backup,),
            facts=(("slot", name), ("replica", "stopped")),
        )
        return SlotPlan(plan, name, None, in_config=in_config)

    async def _connect(self, replica: NodeConfig) -> RemoteShell:
        assert self._shells is not None
        try:
            return await self._shells.connect(replica)
        except RemoteError as exc:
            raise SlotChangeRefused(
                Phrase.of("error.slotless.host_unreachable", node=replica.name, reason=exc.phrase)
            ) from exc

    async def attach(
        self,
        node: str,
        slot: str | None,
        cluster: str | None,
        digest: str,
        requested_by: int = 0,
        confirmed_by: int | None = None,
    ) -> SlotChangeOutcome:
        """Re-check the state, refuse if the plan changed, then run it (undo on failure)."""
        planned = await self.attach_plan(node, slot, cluster)
        if planned.digest != digest:
            raise SlotChangeRefused(Phrase.of("error.plan.changed"))
        found, replica = self.resolve(planned.plan.node, planned.plan.cluster)
        outcome = await self._locked_run(found, replica, planned, requested_by, confirmed_by)
        if outcome.ok:
            await self._record(found.name, replica.name, planned.slot)
        return outcome

    # --- /detachslot -------------------------------------------------------------------

    async def detach_plan(self, node: str, cluster: str | None) -> SlotPlan:
        """The plan that takes ``node``'s slot away and drops it; refuse if it has none."""
        found, replica = self.resolve(node, cluster)
        await self._require_unlocked(found, replica)
        primary, sender, own = await self._state(found, replica)
        name = sender.slot_name if sender is not None and sender.slot_name else replica.slot
        if name is None:
            raise SlotChangeRefused(Phrase.of("error.slotless.no_slot", node=replica.name))
        if own is None or not own.ok:
            raise SlotChangeRefused(Phrase.of("error.slotless.detach_down", node=replica.name))
        if not any(s.name == name for s in primary.slots):
            raise SlotChangeRefused(
                Phrase.of("error.slot.not_found", slot=name, node=found.primary.name)
            )
        await self._require_privileges(replica)
        # the name its walsender streams under: configured, else the one that holds the slot
        # now (slot.active_pid = pg_stat_replication.pid); it keeps it when it reconnects
        held = next((s for s in primary.slots if s.name == name), None)
        holder = next(
            (s for s in primary.walsenders if held is not None and s.pid == held.active_pid),
            sender,
        )
        streams_as = replica.application_name or (
            holder.application_name if holder is not None else replica.name
        )
        steps = (
            Step(
                "reset_primary_slot_name",
                Phrase.of("step.reset_primary_slot_name", node=replica.name),
                Sql(SqlTarget.REPLICA, "ALTER SYSTEM RESET primary_slot_name"),
                undo=Sql(SqlTarget.REPLICA, "ALTER SYSTEM SET primary_slot_name = %s", (name,)),
            ),
            Step(
                "wait_inactive",
                Phrase.of("step.slot_inactive", slot=name),
                Wait(Probe.SLOT_INACTIVE, self._verify_timeout, _POLL_S, (name,)),
            ),
            Step(
                "drop_slot",
                Phrase.of("step.drop_slot", slot=name, primary=found.primary.name),
                Sql(SqlTarget.PRIMARY, "SELECT pg_catalog.pg_drop_replication_slot(%s)", (name,)),
            ),
            Step(
                "verify",
                Phrase.of("step.streams_without_slot", node=replica.name),
                Wait(Probe.STREAMING, self._verify_timeout, _POLL_S, ("", streams_as, "")),
            ),
        )
        plan = Plan(
            kind="detachslot",
            cluster=found.name,
            node=replica.name,
            host=found.primary.name,
            steps=steps,
            facts=(("slot", name),),
        )
        original = _configured(self._clusters, found.name, replica.name)
        return SlotPlan(plan, name, None, in_config=original.slot == name)

    async def detach(
        self,
        node: str,
        cluster: str | None,
        digest: str,
        requested_by: int = 0,
        confirmed_by: int | None = None,
    ) -> SlotChangeOutcome:
        """Re-check, refuse a changed plan, run it; the bot then records "no slot"."""
        planned = await self.detach_plan(node, cluster)
        if planned.digest != digest:
            raise SlotChangeRefused(Phrase.of("error.plan.changed"))
        found, replica = self.resolve(planned.plan.node, planned.plan.cluster)
        outcome = await self._locked_run(found, replica, planned, requested_by, confirmed_by)
        if outcome.ok or "drop_slot" in outcome.done:
            await self._record(found.name, replica.name, None)
        return outcome

    async def _record(self, cluster: str, node: str, slot: str | None) -> None:
        """The bot's view of the node's slot now, kept in the store when there is one."""
        self._overrides.set(cluster, node, slot)
        if self._store is not None:
            await self._store.save(cluster, node, slot)

    # --- running a plan ----------------------------------------------------------------

    async def _locked_run(
        self,
        cluster: ClusterConfig,
        replica: NodeConfig,
        planned: SlotPlan,
        requested_by: int,
        confirmed_by: int | None,
    ) -> SlotChangeOutcome:
        """:meth:`_run` holding the node's lock as a job of the plan's kind; the job ends
        succeeded, rolled back, or (an undo failed: a human must look) rollback_failed,
        which keeps the lock."""
        if self._jobs is None:
            return await self._run(cluster, replica, planned)
        try:
            job = await self._jobs.create(
                cluster.name,
                replica.name,
                requested_by,
                confirmed_by,
                "",
                "",
                "",
                kind=planned.plan.kind,
            )
        except RebuildRefused as exc:
            raise SlotChangeRefused(exc.phrase) from exc
        # the job row keeps a language-neutral record (``slotless.*`` phrases, str())
        state, parts = RebuildState.ROLLBACK_FAILED, [Phrase.of("slotless.interrupted")]
        try:
            outcome = await self._run(cluster, replica, planned)
            if outcome.ok:
                state, parts = (
                    RebuildState.SUCCEEDED,
                    [Phrase.of("slotless.done", slot=planned.slot)],
                )
            else:
                step, error = outcome.failed_step or "", outcome.error or ""
                parts = [Phrase.of("slotless.failed", step=step, error=error)]
                if "drop_slot" in outcome.done:
                    parts.append(Phrase.of("slotless.dropped", slot=planned.slot))
                if outcome.undo_errors:
                    parts += [
                        Phrase.of("slotless.undo_failed", error=e) for e in outcome.undo_errors
                    ]
                else:
                    state = RebuildState.ROLLED_BACK
            return outcome
        finally:
            detail = "; ".join(str(part) for part in parts)
            await self._jobs.update(job.id, state=state, step="done", detail=detail)

    async def _run(
        self, cluster: ClusterConfig, replica: NodeConfig, planned: SlotPlan
    ) -> SlotChangeOutcome:
        """Run the steps in order; on a failure run the undo of the finished ones, newest
        first (an ALTER SYSTEM step and its undo each reload the replica's configuration). A
        slot dropped as undo is always one this run created (it held nothing the replica
        needed); ``drop_slot`` of a detach runs only once the slot is released, and once it
        ran nothing is undone: the replica is never pointed back at a dropped slot."""
        plan = planned.plan
        done: list[Step] = []
        failed: Step | None = None
        error: Value = ""
        altered: Step | None = None  # its ALTER SYSTEM ran, its reload failed: undo it too
        for step in plan.steps:
            try:
                await self._execute(cluster, replica, step)
            except (NodeUnavailable, SlotChangeRefused) as exc:
                failed, error = step, exc.phrase
                altered = step if isinstance(exc, _ReloadFailed) else None
                break
            done.append(step)
        base = SlotChangeOutcome(
            kind=plan.kind,
            cluster=cluster.name,
            node=replica.name,
            slot=planned.slot,
            done=tuple(s.key for s in done),
            in_config=planned.in_config,
        )
        if failed is None:
            return base
        if any(s.key == "drop_slot" for s in done):
            # the slot is gone: pointing the replica back at it would break its next start;
            # report the failed verify, undo nothing
            return dataclasses.replace(base, failed_step=failed.key, error=error)
        undone: list[str] = []
        undo_errors: list[Value] = []
        for step in reversed([*done, *([altered] if altered is not None else [])]):
            if step.undo is None:
                continue
            try:
                if step.key == "create_slot":  # the replica let go of it (undo above)
                    released = Wait(Probe.SLOT_INACTIVE, self._verify_timeout, _POLL_S)
                    await self._wait(
                        cluster, replica, dataclasses.replace(released, args=(planned.slot,))
                    )
                try:
                    await self._execute(
                        cluster, replica, dataclasses.replace(step, action=step.undo)
                    )
                except _ReloadFailed:
                    if step is not altered:  # the undone value was live: it must be reloaded
                        raise
                undone.append(step.key)
            except (NodeUnavailable, SlotChangeRefused) as exc:
                undo_errors.append(Phrase.of("error.step_failed", step=step.key, reason=exc.phrase))
                if step.key == "create_slot":
                    break
        return dataclasses.replace(
            base,
            failed_step=failed.key,
            error=error,
            undone=tuple(undone),
            undo_errors=tuple(undo_errors),
        )

    async def _execute(self, cluster: ClusterConfig, replica: NodeConfig, step: Step) -> None:
        action = step.action
        if isinstance(action, Sql):
            node = cluster.primary if action.target is SqlTarget.PRIMARY else replica
            await self._pg.run_plan_sql(node, action.statement, action.params)
            if action.statement.startswith("ALTER SYSTEM"):  # one step with its reload
                try:
                    await self._pg.run_plan_sql(node, _RELOAD, ())
                except (NodeUnavailable, SlotChangeRefused) as exc:
                    raise _ReloadFailed(exc.phrase) from exc
        elif isinstance(action, Wait):
            await self._wait(cluster, replica, action)
        elif isinstance(action, RemoteCommand | FileEdit):
            await self._execute_remote(replica, step.key, action)
        else:  # an action kind these plans never contain
            raise SlotChangeRefused(
                Phrase.of("error.plan.unsupported", step=step.key, action=type(action).__name__)
            )

    async def _execute_remote(
        self, replica: NodeConfig, key: str, action: RemoteCommand | FileEdit
    ) -> None:
        """A command on the replica's host; a FileEdit keeps the original first (an existing
        copy is never overwritten) and replaces the file in one rename, mode and owner kept."""
        if isinstance(action, FileEdit):
            path, backup = shlex.quote(action.path), shlex.quote(action.backup_path)
            tmp = shlex.quote(action.path + ".replbot-new")
            command = (
                f"{{ test -e {backup} || cp -p -- {path} {backup}; }} && cp -p -- {path} {tmp} "
                f"&& printf '%s' {shlex.quote(action.content)} > {tmp} && mv -f -- {tmp} {path}"
            )
            ok_exits: tuple[int, ...] = (0,)
        else:
            command, ok_exits = action.command, action.ok_exits
        shell = await self._connect(replica)
        try:
            result = await shell.run(command, action_timeout(action, self._command_timeout))
        except RemoteError as exc:
            raise SlotChangeRefused(exc.phrase) from exc
        finally:
            await shell.close()
        if result.exit_status not in ok_exits:
            tail = (result.stderr or result.stdout).strip()[-300:]
            raise SlotChangeRefused(
                Phrase.of("error.step.exit", step=key, status=result.exit_status, output=tail)
            )

    async def _wait(self, cluster: ClusterConfig, replica: NodeConfig, wait: Wait) -> None:
        deadline = self._clock.monotonic() + wait.timeout_s
        last: Value = Phrase.of("error.wait.no_answer_yet")
        while True:
            try:
                primary = await self._pg.snapshot(cluster.primary)
                own = await self._pg.snapshot(replica) if wait.probe is Probe.STREAMING else None
                holds, last = _probe(replica, primary, own, wait)
                if holds:
                    return
            except NodeUnavailable as exc:
                last = exc.phrase
            if self._clock.monotonic() >= deadline:
                raise SlotChangeRefused(
                    Phrase.of(
                        "error.wait.timeout",
                        probe=wait.probe.value,
                        timeout_s=wait.timeout_s,
                        last=last,
                    )
                )
            await self._clock.sleep(wait.interval_s)


class _ReloadFailed(SlotChangeRefused):
    """An ALTER SYSTEM step's statement ran, but pg_reload_conf() afterwards failed."""


def _probe(
    replica: NodeConfig, primary: NodeSnapshot, own: NodeSnapshot | None, wait: Wait
) -> tuple[bool, str]:
    """(holds?, what was seen) for one poll of a Wait of these plans.

    ``streaming`` is verified from both sides: the primary's walsender for the replica holds
    the slot (``active_pid``; none for an empty slot argument) and streams, and the replica's
    WAL receiver streams through that same slot.
    """
    if wait.probe is Probe.SLOT_INACTIVE:
        slot = next((s for s in primary.slots if s.name == wait.args[0]), None)
        if slot is None or not slot.active:
            return True, "released"
        return False, f"slot {wait.args[0]} still held by walsender {slot.active_pid}"
    if wait.probe is Probe.STREAMING:
        want = wait.args[0] or None
        backups = basebackup_pids(primary.walsenders)
        candidates = [s for s in primary.walsenders if s.pid not in backups]
        if want is not None:
            sender = next((s for s in candidates if s.slot_name == want), None)
        else:
            streams_as = wait.args[1] if len(wait.args) > 1 and wait.args[1] else replica.name
            named = [s for s in candidates if s.application_name == streams_as]
            sender = next((s for s in named if s.slot_name is None), next(iter(named), None))
        receiver = own.receiver if own is not None else None
        primary_ok = sender is not None and sender.state == "streaming" and sender.slot_name == want
        replica_ok = (
            receiver is not None and receiver.status == "streaming" and receiver.slot_name == want
        )
        if primary_ok and replica_ok:
            return True, "streaming"
        seen = ", ".join(
            f"{s.application_name} {s.state} slot {s.slot_name or '–'}" for s in candidates
        )
        mine = f"{receiver.status} slot {receiver.slot_name or '–'}" if receiver else "not running"
        return False, f"walsenders: {seen or 'none'}; WAL receiver: {mine}"
    return False, f"unknown probe {wait.probe.value}"


def _slot_name_for(node: str) -> str:
    """A valid slot name derived from a node name ("pg-2" -> "pg_2")."""
    return re.sub(r"[^a-z0-9_]", "_", node.lower())[:63]


def action_timeout(action: RemoteCommand | FileEdit, default: float) -> float:
    """The timeout of one remote action."""
    if isinstance(action, RemoteCommand) and action.timeout_s is not None:
        return action.timeout_s
    return default


def _create_slot_step(cluster: ClusterConfig, name: str) -> Step:
    """Create physical slot ``name`` on the primary, reserving WAL now; undo: drop it."""
    return Step(
        "create_slot",
        Phrase.of("step.create_slot_reserving", slot=name, primary=cluster.primary.name),
        Sql(
            SqlTarget.PRIMARY,
            "SELECT pg_catalog.pg_create_physical_replication_slot(%s, true)",
            (name,),
        ),
        undo=Sql(SqlTarget.PRIMARY, "SELECT pg_catalog.pg_drop_replication_slot(%s)", (name,)),
    )


def _configured(clusters: Sequence[ClusterConfig], cluster: str, node: str) -> NodeConfig:
    found = next(c for c in clusters if c.name == cluster).node(node)
    assert found is not None
    return found
