"""/rebuild wording: preflight, plan, confirmations, progress, recovery."""

from __future__ import annotations

from bot.models import (
    CheckLevel,
    PreflightReport,
    RebuildJob,
    RebuildPlan,
    RebuildProgress,
    RebuildState,
)
from bot.services.plans.model import action_kind, describe
from bot.services.rebuild.service import Inspection
from handlers.i18n import _, ngettext
from handlers.render.check import item_detail, item_line
from handlers.render.common import (
    FAIL,
    INFO,
    OK,
    WARN,
    _approver,
    _expiry,
    code,
    esc,
    human_bytes,
    human_seconds,
)
from handlers.render.phrases import say
from handlers.render.plans import said, step_title


def _recovery_hint(node: str) -> str:
    """How to leave an interrupted or failed rollback: roll back, or release the lock."""
    return _(
        "Roll back with {rollback}; after fixing it by hand, release the lock with {abandon}."
    ).format(
        rollback=code("/rebuild " + node + " --rollback"),
        abandon=code("/rebuild " + node + " --abandon"),
    )


def rebuild_preflight(report: PreflightReport) -> str:
    """The preflight checks, failures first in the headline."""
    fails = [i for i in report.items if i.level is CheckLevel.FAIL]
    if fails:
        head = f"{FAIL} " + _("rebuild of {node} refused: {reason}").format(
            node=esc(report.node), reason=esc(item_detail(fails[0]))
        )
        if len(fails) > 1:
            more = len(fails) - 1
            head += " " + ngettext("(and {n} more)", "(and {n} more)", more).format(n=more)
    else:
        head = f"{OK} " + _("preflight of {node} passed").format(node=esc(report.node))
    lines = [head]
    lines.extend(item_line(item, with_node=False) for item in report.items)
    return "\n".join(lines)


def rebuild_plan(plan: RebuildPlan) -> str:
    """Every step, with the exact SQL or shell command."""
    lines = [
        "<b>"
        + _("plan for {where}").format(where=f"{esc(plan.cluster)}/{esc(plan.node)}")
        + "</b> "
        + _("on {host}:").format(host=esc(plan.host))
    ]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step_title(step))} [{esc(action_kind(step.action))}]")
        lines.append(f"   {code(describe(step.action))}")
    return "\n".join(lines)


def _dry_run() -> str:
    return f"{INFO} " + _("dry run: nothing was changed")


def rebuild_dry_run(report: PreflightReport, plan: RebuildPlan) -> str:
    """The reply of --dry-run: checks, then the plan; nothing was changed."""
    return _dry_run() + "\n" + rebuild_preflight(report) + "\n\n" + rebuild_plan(plan)


def rebuild_plan_changed(plan: RebuildPlan) -> str:
    """The plan computed at the press differs from the one approved: nothing runs."""
    return (
        f"{FAIL} "
        + _(
            "rebuild of {node} not started: the plan changed since it was shown (the node's "
            "state moved on). This is the plan now; run {command} again to approve it."
        ).format(node=esc(plan.node), command=code(f"/rebuild {plan.node}"))
        + "\n\n"
        + rebuild_plan(plan)
    )


def rebuild_confirm(plan: RebuildPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the rebuild confirmation button."""
    return (
        f"{WARN} <b>"
        + _("Replace the data of {node}").format(node=esc(plan.node))
        + "</b> "
        + _("on {host}?").format(host=esc(plan.host))
        + "\n"
        + _(
            "{data_dir} will be moved to {old_dir} (kept, not deleted) and rebuilt from the "
            "primary with pg_basebackup (slot {slot})."
        ).format(data_dir=code(plan.data_dir), old_dir=code(plan.old_dir), slot=code(plan.slot))
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def rebuild_confirmed(plan: RebuildPlan, by: str) -> str:
    """The confirmation message once pressed (its buttons are removed)."""
    return (
        f"{OK} "
        + _("rebuild of {node} on {host} confirmed by {by}").format(
            node=f"<b>{esc(plan.node)}</b>", host=esc(plan.host), by=esc(by)
        )
        + f"; {code(plan.data_dir)} → {code(plan.old_dir)}"
    )


_STATE_ICON = {
    RebuildState.RUNNING: "⏳",
    RebuildState.SUCCEEDED: OK,
    RebuildState.ROLLED_BACK: FAIL,
    RebuildState.ROLLBACK_FAILED: "🆘",
    RebuildState.INTERRUPTED: WARN,
    RebuildState.ABANDONED: INFO,
}


def _state_title(state: RebuildState) -> str:
    return {
        RebuildState.RUNNING: _("rebuilding"),
        RebuildState.SUCCEEDED: _("rebuilt"),
        RebuildState.ROLLED_BACK: _("rebuild failed, rolled back:"),
        RebuildState.ROLLBACK_FAILED: _("rebuild failed and ROLLBACK FAILED:"),
        RebuildState.INTERRUPTED: _("rebuild interrupted:"),
        RebuildState.ABANDONED: _("rebuild abandoned:"),
    }[state]


def rebuild_progress(progress: RebuildProgress) -> str:
    """The live message of a running rebuild (edited in place)."""
    icon = _STATE_ICON[progress.state]
    lines = [
        f"{icon} {_state_title(progress.state)} "
        f"<b>{esc(progress.cluster)}/{esc(progress.node)}</b> "
        + _("(job {job}, {elapsed})").format(
            job=progress.job_id, elapsed=esc(human_seconds(progress.elapsed_s))
        )
    ]
    if progress.state is RebuildState.RUNNING:
        count = f" {progress.step_index}/{progress.step_count}" if progress.step_count else ""
        now = say(progress.title) if progress.title else said(progress.said)
        lines.append(_("step") + f"{count}: {esc(now or progress.detail or progress.step)}")
        if progress.backup is not None and progress.step == "basebackup":
            b = progress.backup
            line = f"{_bar(b.percent)} {b.percent} % · " + _("{done} of {total}").format(
                done=esc(human_bytes(b.done_kb * 1024)), total=esc(human_bytes(b.total_kb * 1024))
            )
            if progress.rate_bytes_s:
                line += f" · {esc(human_bytes(int(progress.rate_bytes_s)))}/" + _("s")
            if progress.eta_s is not None:
                line += " · " + _("ETA {eta}").format(eta=esc(human_seconds(progress.eta_s)))
            lines.append(line)
    else:
        lines.append(esc(said(progress.said) or progress.detail))
        if progress.output:
            lines.extend(f"   {code(line)}" for line in progress.output.splitlines()[-12:])
        if progress.state is RebuildState.SUCCEEDED and progress.old_dir:
            lines.append(
                _(
                    "Old data kept in {old_dir}; remove it with {command} once you are satisfied."
                ).format(
                    old_dir=code(progress.old_dir),
                    command=code("/rebuild " + progress.node + " --cleanup"),
                )
            )
        if progress.state in {RebuildState.INTERRUPTED, RebuildState.ROLLBACK_FAILED}:
            lines.append(_recovery_hint(progress.node))
    return "\n".join(lines)


def _bar(percent: int, width: int = 10) -> str:
    filled = max(0, min(width, round(percent * width / 100)))
    return "▓" * filled + "░" * (width - filled)


def rebuild_started(job: RebuildJob) -> str:
    """First text of the progress message."""
    return "⏳ " + _("rebuild of {where} started (job {job})").format(
        where=f"<b>{esc(job.cluster)}/{esc(job.node)}</b>", job=job.id
    )


def rebuild_busy_reason(job: RebuildJob, progress: RebuildProgress | None) -> str:
    """Why a second /rebuild is refused (plain text: the dispatcher escapes refusals)."""
    where = job.step
    if progress is not None and progress.backup is not None and progress.step == "basebackup":
        where = f"basebackup {progress.backup.percent} %"
    return _("rebuild of {node} refused: already in progress (job {job}, {state}, {where})").format(
        node=job.node, job=job.id, state=job.state.value, where=where
    )


def rebuild_rollback_started(node: str) -> str:
    """First text of the progress message of --rollback."""
    return "⏳ " + _("rolling back the rebuild of {node}").format(node=esc(node))


def rebuild_interrupted(job: RebuildJob, inspection: Inspection) -> str:
    """Told to the admins at start-up when a job was left unfinished."""
    return (
        f"{WARN} "
        + _(
            "replbot restarted while rebuilding {where} (job {job}). The node stays locked."
        ).format(where=f"<b>{esc(job.cluster)}/{esc(job.node)}</b>", job=job.id)
        + f"\n{esc(said(inspection.parts))}\n"
        + _("Old data (if moved): {old_dir}").format(old_dir=code(job.old_dir))
        + "\n"
        + _recovery_hint(job.node)
    )


def rebuild_cancel_requested(node: str) -> str:
    """Reply to --cancel."""
    return f"{WARN} " + _(
        "cancelling the rebuild of {node}: stopping pg_basebackup and rolling back"
    ).format(node=esc(node))


def rebuild_abandoned(job: RebuildJob) -> str:
    """Reply to --abandon."""
    return f"{INFO} " + _("lock of {node} released (job {job} abandoned)").format(
        node=esc(job.node), job=job.id
    )


def confirm_cleanup(job: RebuildJob, ttl_s: float, second_approver: bool = False) -> str:
    """The question before deleting the old data directory."""
    return (
        f"{WARN} "
        + _(
            "{delete} {old_dir} on {node}? It is the data kept from before rebuild job {job}; "
            "this cannot be undone."
        ).format(
            delete="<b>" + _("Delete") + "</b>",
            old_dir=code(job.old_dir),
            node=esc(job.node),
            job=job.id,
        )
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def confirm_rollback(job: RebuildJob, ttl_s: float, second_approver: bool) -> str:
    """The question before rolling back an interrupted rebuild."""
    return (
        f"{WARN} "
        + _(
            "{roll_back} rebuild job {job} of {where} ({state}, step {step})? The old data "
            "directory {old_dir} is moved back and the replica restarted."
        ).format(
            roll_back="<b>" + _("Roll back") + "</b>",
            job=job.id,
            where=f"{esc(job.cluster)}/{esc(job.node)}",
            state=esc(job.state.value),
            step=esc(job.step),
            old_dir=code(job.old_dir),
        )
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def confirm_abandon(job: RebuildJob, ttl_s: float, second_approver: bool) -> str:
    """The question before releasing the lock of an interrupted rebuild."""
    return (
        f"{WARN} "
        + _(
            "{abandon} rebuild job {job} of {where} ({state}, step {step}) and release the "
            "node's lock? Only do this after fixing the node by hand; nothing on it is changed."
        ).format(
            abandon="<b>" + _("Abandon") + "</b>",
            job=job.id,
            where=f"{esc(job.cluster)}/{esc(job.node)}",
            state=esc(job.state.value),
            step=esc(job.step),
        )
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def rebuild_job_changed(node: str, job_id: str) -> str:
    """Refusal when the job a rollback/abandon button named no longer holds the lock."""
    return _(
        "the rebuild job of {node} changed since job {job} was shown; run the command again"
    ).format(node=node, job=job_id)


def cleanup_done(node: str, path: str) -> str:
    """After the old data directory was removed."""
    return f"{OK} " + _("removed {path} on {node}").format(path=code(path), node=esc(node))


def button_delete_old_data() -> str:
    """Label of the button confirming the removal of the old data directory."""
    return _("Delete old data")


def button_rebuild(node: str) -> str:
    """Label of the button confirming a rebuild."""
    return _("Rebuild {node}").format(node=node)


def button_rollback(node: str) -> str:
    """Label of the button confirming a rollback."""
    return _("Roll back {node}").format(node=node)


def button_release(node: str) -> str:
    """Label of the button confirming an abandon (the node's lock is released)."""
    return _("Release {node}").format(node=node)


def rebuild_nothing_to_resolve(node: str, mode: str) -> str:
    """Refusal of --rollback / --abandon when no interrupted rebuild holds the node's lock."""
    if mode == "rollback":
        return _("no interrupted rebuild of {node} to roll back").format(node=node)
    return _("no interrupted rebuild of {node} to abandon").format(node=node)
