"""/rebuild NODE: preflight, confirmation, live progress in one edited message, outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.errors import RebuildRefused, ReplbotError
from bot.models import RebuildProgress, RebuildState, Role
from bot.phrases import Phrase
from bot.services.rebuild.plan import plan_digest
from handlers import parsing, render
from handlers.base import Button, Chat, CommandContext, HandlerGroup, Purpose, Reply
from handlers.i18n import N_

log = logging.getLogger(__name__)
group = HandlerGroup()


class ProgressMessage:
    """One chat message edited in place: at most one edit per interval, only on change.

    Telegram rejects identical edits (400) and limits edits per chat, so intermediate
    updates are dropped when they come too fast; the final state is always shown, and a
    new message announces the outcome (edits do not notify anyone).
    """

    def __init__(
        self,
        chat: Chat,
        message_id: int | None,
        interval_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._chat = chat
        self._message_id = message_id
        self._lock = asyncio.Lock()
        self._interval = interval_s
        self._clock = monotonic
        self._last_text = ""
        self._last_at = float("-inf")

    async def __call__(self, progress: RebuildProgress) -> None:
        text = render.rebuild_progress(progress)
        final = progress.state is not RebuildState.RUNNING
        now = self._clock()
        if text == self._last_text or (not final and now - self._last_at < self._interval):
            return
        self._last_text, self._last_at = text, now
        async with self._lock:
            if self._message_id is None:
                self._message_id = await self._chat.send(Reply(text))
            else:
                await self._chat.edit(self._message_id, Reply(text))
        if final:
            await self._chat.send(Reply(_outcome_line(progress)))


def _outcome_line(progress: RebuildProgress) -> str:
    first = render.rebuild_progress(progress).split("\n", 2)
    return "\n".join(first[:2])


_STATE_CHANGING_MODES = frozenset({"cancel"})


def _changes_state(args: list[str]) -> bool:
    """--cancel acts at once; a run, rollback, abandon or cleanup asks to confirm first."""
    try:
        return parsing.rebuild_args(args)[2] in _STATE_CHANGING_MODES
    except ReplbotError:
        return False  # refused by the handler before anything runs


def _mode_role(mode: str) -> tuple[Role, str]:
    """A dry run is for operators; every other mode needs an admin."""
    if mode == "dry-run":
        return Role.OPERATOR, "/rebuild --dry-run"
    return Role.ADMIN, f"/rebuild --{mode}" if mode != "run" else "/rebuild"


def _role_with(args: list[str]) -> tuple[Role, str]:
    """The role ``/rebuild args`` needs (unparsable args raise: the handler refuses them)."""
    return _mode_role(parsing.rebuild_args(args)[2])


@group.command(
    "rebuild",
    Role.OPERATOR,
    "rebuild a replica with pg_basebackup",
    parsing.REBUILD_USAGE,
    changes_state=_changes_state,
    role_with=_role_with,
    purpose=Purpose.REPAIR,
    example="/rebuild pg2 --dry-run",
    role_note=N_("an admin runs, cancels or rolls it back"),
)
async def rebuild(ctx: CommandContext) -> None:
    """Dry-run (operator) or, for admins, run / cancel / roll back / abandon / clean up."""
    node, cluster, mode = parsing.rebuild_args(ctx.args)
    service = ctx.services.rebuild
    ctx.services.authz.require(ctx.user, *_mode_role(mode))  # again: defence in depth
    if mode == "dry-run":
        report, plan = await service.preflight(node, cluster)
        ctx.audit_note = "dry run: " + ("preflight ok" if report.ok else "preflight failed")
        await ctx.chat.send(Reply(render.rebuild_dry_run(report, plan)))
    elif mode == "run":
        await request_rebuild(ctx, node, cluster)
    elif mode == "cancel":
        job = await service.cancel(node, cluster, by=ctx.user.name)
        ctx.audit_note = f"cancel of job {job.id} requested"
        await ctx.chat.send(Reply(render.rebuild_cancel_requested(node)))
    elif mode in ("rollback", "abandon"):
        await _request_lock_action(ctx, node, cluster, mode)
    elif mode == "cleanup":
        job = await service.cleanup_target(node, cluster)
        second = ctx.services.config.rebuild.require_second_approver
        pending = ctx.services.confirmations.issue(
            ctx.user.id,
            "rebuild_cleanup",
            {"node": node, "cluster": job.cluster, "old_dir": job.old_dir},
            other_user=second,
        )
        ctx.audit_note = "cleanup confirmation requested"
        ttl = ctx.services.config.telegram.confirm_timeout_s
        await ctx.chat.send(
            Reply(
                render.confirm_cleanup(job, ttl, second),
                buttons=(
                    Button(render.button_delete_old_data(), f"cf:{pending.nonce}"),
                    Button(render.button_cancel(), f"cx:{pending.nonce}"),
                ),
            )
        )


async def _request_lock_action(
    ctx: CommandContext, node: str, cluster: str | None, mode: str
) -> None:
    """--rollback / --abandon: show the job holding the lock and ask for a confirmation."""
    service = ctx.services.rebuild
    resolved_cluster, resolved_node = service.resolve(node, cluster)
    job = await service.lock_holder(resolved_cluster.name, resolved_node.name)
    if job is None or job.state is RebuildState.RUNNING:
        if mode == "rollback":
            raise RebuildRefused(
                Phrase.of("error.rebuild.nothing_to_roll_back", node=resolved_node.name)
            )
        raise RebuildRefused(Phrase.of("error.rebuild.nothing_to_abandon", node=resolved_node.name))
    second = ctx.services.config.rebuild.require_second_approver
    params = {"node": job.node, "cluster": job.cluster, "job": str(job.id)}
    pending = ctx.services.confirmations.issue(
        ctx.user.id, f"rebuild_{mode}", params, other_user=second
    )
    ctx.audit_note = f"{mode} of job {job.id}: confirmation requested"
    ttl = ctx.services.config.telegram.confirm_timeout_s
    if mode == "rollback":
        question = render.confirm_rollback(job, ttl, second)
        label = render.button_rollback(job.node)
    else:
        question = render.confirm_abandon(job, ttl, second)
        label = render.button_release(job.node)
    await ctx.chat.send(
        Reply(
            question,
            buttons=(
                Button(label, f"cf:{pending.nonce}"),
                Button(render.button_cancel(), f"cx:{pending.nonce}"),
            ),
        )
    )


async def _check_lock_holder(ctx: CommandContext, params: dict[str, str]) -> None:
    """At press time: the job shown must still be the one holding the node's lock."""
    node, cluster = params["node"], params["cluster"]
    holder = await ctx.services.rebuild.lock_holder(cluster, node)
    if holder is None or str(holder.id) != params["job"]:
        raise RebuildRefused(Phrase.of("error.rebuild.job_changed", node=node, job=params["job"]))


async def request_rebuild(ctx: CommandContext, node: str, cluster: str | None) -> None:
    """Preflight, the plan and its confirmation button (also offered by /repair's full path)."""
    service = ctx.services.rebuild
    resolved_cluster, resolved_node = service.resolve(node, cluster)
    holder = await service.lock_holder(resolved_cluster.name, resolved_node.name)
    if holder is not None:
        progress = service.progress_of(resolved_cluster.name, resolved_node.name)
        raise RebuildRefused(render.rebuild_busy_phrase(holder, progress))
    report, plan = await service.preflight(node, cluster)
    if not report.ok:
        failed = report.first_failure
        assert failed is not None
        ctx.audit_note = f"preflight failed: {failed.name}: {failed.detail!s}"
        await ctx.chat.send(Reply(render.rebuild_preflight(report)))
        raise _PreflightRefused(render.preflight_refused(failed))
    second = ctx.services.config.rebuild.require_second_approver
    pending = ctx.services.confirmations.issue(
        ctx.user.id,
        "rebuild",
        {
            "node": plan.node,
            "cluster": plan.cluster,
            "requested_by": str(ctx.user.id),
            "tag": service.tag_of(plan),
            "previous_job": str(plan.previous_job),
            "plan": plan_digest(plan),
        },
        other_user=second,
    )
    ttl = ctx.services.config.telegram.confirm_timeout_s
    ctx.audit_note = "preflight ok; confirmation requested"
    await ctx.chat.send(
        Reply(render.rebuild_preflight(report) + "\n\n" + render.rebuild_plan(plan))
    )
    await ctx.chat.send(
        Reply(
            render.rebuild_confirm(plan, ttl, second),
            buttons=(
                Button(render.button_rebuild(plan.node), f"cf:{pending.nonce}"),
                Button(render.button_cancel(), f"cx:{pending.nonce}"),
            ),
        )
    )


class _PreflightRefused(RebuildRefused):
    """Preflight failed; the report was already sent, so the dispatcher adds a short line.

    ``audit_note`` is the audit row's reason (which check failed, and why).
    """

    def __init__(self, audit_note: str, changed: bool = False) -> None:
        super().__init__(
            Phrase.of("error.plan.changed") if changed else Phrase.of("error.rebuild.preflight")
        )
        self.audit_note = audit_note


def _progress_sink(ctx: CommandContext, message_id: int | None) -> ProgressMessage:
    return ProgressMessage(
        ctx.chat,
        message_id,
        ctx.services.config.rebuild.progress_interval_s,
        ctx.services.clock.monotonic,
    )


@group.action("rebuild", Role.ADMIN, changes_state=True)
async def rebuild_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """The confirmation was pressed: re-run preflight, take the lock, start the job."""
    service = ctx.services.rebuild
    node, cluster = params["node"], params["cluster"]
    ctx.audit_args = f"{node} {cluster}"
    previous = params.get("previous_job", "")
    report, plan = await service.preflight(
        node, cluster, tag=params.get("tag"), previous_job=int(previous) if previous else None
    )
    if not report.ok:
        failed = report.first_failure
        assert failed is not None
        ctx.audit_note = f"preflight failed at confirmation: {failed.detail!s}"
        await ctx.chat.send(Reply(render.rebuild_preflight(report)))
        raise _PreflightRefused(render.preflight_refused(failed))
    if plan_digest(plan) != params.get("plan"):
        ctx.audit_note = "plan changed since it was shown; not run"
        await ctx.chat.send(Reply(render.rebuild_plan_changed(plan)))
        raise _PreflightRefused(ctx.audit_note, changed=True)
    requested_by = int(params.get("requested_by", ctx.user.id))
    # Take the lock first: a second admin confirming at the same moment is refused before
    # anything is shown as started. The progress message is sent by the job's first update.
    sink = _progress_sink(ctx, None)
    job = await service.start(plan, requested_by, ctx.user.id, sink)
    ctx.audit_note = f"job {job.id} started"
    if ctx.request.message_id is not None:
        await ctx.chat.edit(
            ctx.request.message_id, Reply(render.rebuild_confirmed(plan, ctx.user.name))
        )


@group.action("rebuild_rollback", Role.ADMIN, changes_state=True)
async def rollback_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """Roll back the interrupted job the question showed (the service re-checks its state)."""
    node, cluster = params["node"], params["cluster"]
    ctx.audit_args = f"{node} {cluster} job {params['job']}"
    await _check_lock_holder(ctx, params)
    # As for a rebuild: nothing is shown as started before the service accepted the rollback
    # (it may still refuse); the progress message is sent by the job's first update.
    job = await ctx.services.rebuild.rollback(node, cluster, ctx.user.id, _progress_sink(ctx, None))
    ctx.audit_note = f"rollback of job {job.id} started"
    started = Reply(render.rebuild_rollback_started(node))
    if ctx.request.message_id is not None:
        await ctx.chat.edit(ctx.request.message_id, started)
    else:
        await ctx.chat.send(started)


@group.action("rebuild_abandon", Role.ADMIN, changes_state=True)
async def abandon_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """Release the lock of the interrupted job the question showed."""
    node, cluster = params["node"], params["cluster"]
    ctx.audit_args = f"{node} {cluster} job {params['job']}"
    await _check_lock_holder(ctx, params)
    job = await ctx.services.rebuild.abandon(node, cluster, ctx.user.id)
    ctx.audit_note = f"job {job.id} abandoned"
    text = render.rebuild_abandoned(job)
    if ctx.request.message_id is not None:
        await ctx.chat.edit(ctx.request.message_id, Reply(text))
    else:
        await ctx.chat.send(Reply(text))


@group.action("rebuild_cleanup", Role.ADMIN, changes_state=True)
async def cleanup_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """Delete the old data directory of the last successful rebuild."""
    node, cluster = params["node"], params["cluster"]
    ctx.audit_args = f"{node} {cluster}"
    path = await ctx.services.rebuild.cleanup(
        node, cluster, ctx.user.id, old_dir=params.get("old_dir")
    )
    ctx.audit_note = f"removed {path}"
    text = render.cleanup_done(node, path)
    if ctx.request.message_id is not None:
        await ctx.chat.edit(ctx.request.message_id, Reply(text))
    else:
        await ctx.chat.send(Reply(text))
