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
from handlers.render.common import (
    _LEVEL_ICON,
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


def _recovery_hint(node: str) -> str:
    """How to leave an interrupted or failed rollback: roll back, or release the lock."""
    return (
        f"Roll back with {code('/rebuild ' + node + ' --rollback')}; after fixing it by hand, "
        f"release the lock with {code('/rebuild ' + node + ' --abandon')}."
    )


def rebuild_preflight(report: PreflightReport) -> str:
    """The preflight checks, failures first in the headline."""
    fails = [i for i in report.items if i.level is CheckLevel.FAIL]
    if fails:
        head = f"{FAIL} rebuild of {esc(report.node)} refused: {esc(fails[0].detail)}" + (
            f" (and {len(fails) - 1} more)" if len(fails) > 1 else ""
        )
    else:
        head = f"{OK} preflight of {esc(report.node)} passed"
    lines = [head]
    for item in report.items:
        line = f"{_LEVEL_ICON[item.level]} {esc(item.name)}: {esc(item.detail)}"
        if item.fix and item.level is not CheckLevel.OK:
            line += f" → {esc(item.fix)}"
        lines.append(line)
    return "\n".join(lines)


def rebuild_plan(plan: RebuildPlan) -> str:
    """Every step, with the exact SQL or shell command."""
    lines = [f"<b>plan for {esc(plan.cluster)}/{esc(plan.node)}</b> on {esc(plan.host)}:"]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step.title)} [{esc(action_kind(step.action))}]")
        lines.append(f"   {code(describe(step.action))}")
    return "\n".join(lines)


def rebuild_dry_run(report: PreflightReport, plan: RebuildPlan) -> str:
    """The reply of --dry-run: checks, then the plan; nothing was changed."""
    return (
        f"{INFO} dry run: nothing was changed\n"
        + rebuild_preflight(report)
        + "\n\n"
        + rebuild_plan(plan)
    )


def rebuild_plan_changed(plan: RebuildPlan) -> str:
    """The plan computed at the press differs from the one approved: nothing runs."""
    return (
        f"{FAIL} rebuild of {esc(plan.node)} not started: the plan changed since it was shown "
        f"(the node's state moved on). This is the plan now; run {code(f'/rebuild {plan.node}')} "
        "again to approve it.\n\n" + rebuild_plan(plan)
    )


def rebuild_confirm(plan: RebuildPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the rebuild confirmation button."""
    who = _approver(second_approver)
    return (
        f"{WARN} <b>Replace the data of {esc(plan.node)}</b> on {esc(plan.host)}?\n"
        f"{code(plan.data_dir)} will be moved to {code(plan.old_dir)} (kept, not deleted) and "
        f"rebuilt from the primary with pg_basebackup (slot {code(plan.slot)}).\n"
        + _expiry(ttl_s, who)
    )


def rebuild_confirmed(plan: RebuildPlan, by: str) -> str:
    """The confirmation message once pressed (its buttons are removed)."""
    return (
        f"{OK} rebuild of <b>{esc(plan.node)}</b> on {esc(plan.host)} confirmed by {esc(by)}; "
        f"{code(plan.data_dir)} → {code(plan.old_dir)}"
    )


_STATE_ICON = {
    RebuildState.RUNNING: "⏳",
    RebuildState.SUCCEEDED: OK,
    RebuildState.ROLLED_BACK: FAIL,
    RebuildState.ROLLBACK_FAILED: "🆘",
    RebuildState.INTERRUPTED: WARN,
    RebuildState.ABANDONED: INFO,
}


def rebuild_progress(progress: RebuildProgress) -> str:
    """The live message of a running rebuild (edited in place)."""
    icon = _STATE_ICON[progress.state]
    title = {
        RebuildState.RUNNING: "rebuilding",
        RebuildState.SUCCEEDED: "rebuilt",
        RebuildState.ROLLED_BACK: "rebuild failed, rolled back:",
        RebuildState.ROLLBACK_FAILED: "rebuild failed and ROLLBACK FAILED:",
        RebuildState.INTERRUPTED: "rebuild interrupted:",
        RebuildState.ABANDONED: "rebuild abandoned:",
    }[progress.state]
    lines = [
        f"{icon} {title} <b>{esc(progress.cluster)}/{esc(progress.node)}</b> "
        f"(job {progress.job_id}, {esc(human_seconds(progress.elapsed_s))})"
    ]
    if progress.state is RebuildState.RUNNING:
        count = f" {progress.step_index}/{progress.step_count}" if progress.step_count else ""
        lines.append(f"step{count}: {esc(progress.detail or progress.step)}")
        if progress.backup is not None and progress.step == "basebackup":
            b = progress.backup
            line = (
                f"{_bar(b.percent)} {b.percent} % · {esc(human_bytes(b.done_kb * 1024))} of "
                f"{esc(human_bytes(b.total_kb * 1024))}"
            )
            if progress.rate_bytes_s:
                line += f" · {esc(human_bytes(int(progress.rate_bytes_s)))}/s"
            if progress.eta_s is not None:
                line += f" · ETA {esc(human_seconds(progress.eta_s))}"
            lines.append(line)
    else:
        lines.append(esc(progress.detail))
        if progress.output:
            lines.extend(f"   {code(line)}" for line in progress.output.splitlines()[-12:])
        if progress.state is RebuildState.SUCCEEDED and progress.old_dir:
            lines.append(
                f"Old data kept in {code(progress.old_dir)}; remove it with "
                f"{code('/rebuild ' + progress.node + ' --cleanup')} once you are satisfied."
            )
        if progress.state in {RebuildState.INTERRUPTED, RebuildState.ROLLBACK_FAILED}:
            lines.append(_recovery_hint(progress.node))
    return "\n".join(lines)


def _bar(percent: int, width: int = 10) -> str:
    filled = max(0, min(width, round(percent * width / 100)))
    return "▓" * filled + "░" * (width - filled)


def rebuild_started(job: RebuildJob) -> str:
    """First text of the progress message."""
    return f"⏳ rebuild of <b>{esc(job.cluster)}/{esc(job.node)}</b> started (job {job.id})"


def rebuild_busy_reason(job: RebuildJob, progress: RebuildProgress | None) -> str:
    """Why a second /rebuild is refused (plain text: the dispatcher escapes refusals)."""
    where = job.step
    if progress is not None and progress.backup is not None and progress.step == "basebackup":
        where = f"basebackup {progress.backup.percent} %"
    return (
        f"rebuild of {job.node} refused: already in progress "
        f"(job {job.id}, {job.state.value}, {where})"
    )


def rebuild_rollback_started(node: str) -> str:
    """First text of the progress message of --rollback."""
    return f"⏳ rolling back the rebuild of {esc(node)}"


def rebuild_interrupted(job: RebuildJob, inspection: str) -> str:
    """Told to the admins at start-up when a job was left unfinished."""
    return (
        f"{WARN} replbot restarted while rebuilding <b>{esc(job.cluster)}/{esc(job.node)}</b> "
        f"(job {job.id}). The node stays locked.\n"
        f"{esc(inspection)}\n"
        f"Old data (if moved): {code(job.old_dir)}\n" + _recovery_hint(job.node)
    )


def rebuild_cancel_requested(node: str) -> str:
    """Reply to --cancel."""
    return f"{WARN} cancelling the rebuild of {esc(node)}: stopping pg_basebackup and rolling back"


def rebuild_abandoned(job: RebuildJob) -> str:
    """Reply to --abandon."""
    return f"{INFO} lock of {esc(job.node)} released (job {job.id} abandoned)"


def confirm_cleanup(job: RebuildJob, ttl_s: float, second_approver: bool = False) -> str:
    """The question before deleting the old data directory."""
    return (
        f"{WARN} <b>Delete</b> {code(job.old_dir)} on {esc(job.node)}? It is the data kept from "
        f"before rebuild job {job.id}; this cannot be undone.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def confirm_rollback(job: RebuildJob, ttl_s: float, second_approver: bool) -> str:
    """The question before rolling back an interrupted rebuild."""
    return (
        f"{WARN} <b>Roll back</b> rebuild job {job.id} of {esc(job.cluster)}/{esc(job.node)} "
        f"({esc(job.state.value)}, step {esc(job.step)})? The old data directory "
        f"{code(job.old_dir)} is moved back and the replica restarted.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def confirm_abandon(job: RebuildJob, ttl_s: float, second_approver: bool) -> str:
    """The question before releasing the lock of an interrupted rebuild."""
    return (
        f"{WARN} <b>Abandon</b> rebuild job {job.id} of {esc(job.cluster)}/{esc(job.node)} "
        f"({esc(job.state.value)}, step {esc(job.step)}) and release the node's lock? Only do "
        f"this after fixing the node by hand; nothing on it is changed.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def rebuild_job_changed(node: str, job_id: str) -> str:
    """Refusal when the job a rollback/abandon button named no longer holds the lock."""
    return f"the rebuild job of {node} changed since job {job_id} was shown; run the command again"


def cleanup_done(node: str, path: str) -> str:
    """After the old data directory was removed."""
    return f"{OK} removed {code(path)} on {esc(node)}"


BUTTON_DELETE_OLD_DATA = "Delete old data"


def button_rebuild(node: str) -> str:
    """Label of the button confirming a rebuild."""
    return f"Rebuild {node}"


def button_rollback(node: str) -> str:
    """Label of the button confirming a rollback."""
    return f"Roll back {node}"


def button_release(node: str) -> str:
    """Label of the button confirming an abandon (the node's lock is released)."""
    return f"Release {node}"


def rebuild_nothing_to_resolve(node: str, mode: str) -> str:
    """Refusal of --rollback / --abandon when no interrupted rebuild holds the node's lock."""
    verb = "roll back" if mode == "rollback" else "abandon"
    return f"no interrupted rebuild of {node} to {verb}"
