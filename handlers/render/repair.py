"""/repair (issue 9): diagnosis, paths, plan, confirmation, progress, the alerts' Repair
button. The services give codes and values (bot.services.repair.models); the words are here."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import (
    Alert,
    RebuildState,
)
from bot.services.plans.model import Plan as _Plan
from bot.services.plans.model import describe
from bot.services.repair.models import (
    Diagnosis as _Diagnosis,
)
from bot.services.repair.models import (
    PathName as _PathName,
)
from bot.services.repair.models import (
    Precondition as _Precondition,
)
from bot.services.repair.models import (
    RepairOption as _RepairOption,
)
from bot.services.repair.models import (
    RepairProgress as _RepairProgress,
)
from bot.services.repair.models import (
    RepairProposal as _RepairProposal,
)
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

REPAIR_USAGE = "/repair NODE [CLUSTER] [--dry-run] [--or-full]"


_REWIND_REASON = {
    "not_available": "not assessed",
    "unreachable": "the replica's host cannot be reached",
    "facts_unreadable": "its timelines could not be read",
    "not_diverged": "it has not diverged",
    "divergence_ahead": "it is ahead of the primary on the same timeline",
    "divergence_unrelated": "its history shares nothing with the primary's",
    "target_running": "yes; the bytes are known once it is stopped",
    "dry_run_ok": "pg_rewind --dry-run agrees",
    "dry_run_failed": "pg_rewind --dry-run refused",
    "no_hints": "neither wal_log_hints nor data checksums on the replica",
    "unclean": "it was not shut down cleanly",
    "wal_missing": "its own WAL back to the fork is gone",
    "source_wal_removed": "the primary no longer has the WAL from the fork",
    "not_granted": "the source role lacks EXECUTE on pg_ls_dir/pg_stat_file/pg_read_binary_file",
    "absent": "no pg_rewind binary on the replica's host",
    "running_no_stop_command": "it runs and no stop_command is configured",
}


_PATH_TITLE = {
    _PathName.RESUME: "resume",
    _PathName.PARAMETERS: "parameters",
    _PathName.REWIND: "rewind (pg_rewind)",
    _PathName.FULL: "full (/rebuild)",
}


_PRECONDITION_TEXT = {
    "primary_up": "primary {primary} answers as a primary",
    "same_history": "on the primary's history (timeline {timeline}, primary {primary_timeline})",
    "wal_available": "WAL from {needed} still on the primary ({how})",
    "standby_data": "the data is a standby's ({state})",
    "settings_ok": "hot-standby settings ≥ the primary's {low}",
    "settings_low": "a hot-standby setting is below the primary's ({names})",
    "auto_conf_readable": "{path} can be edited (readable, holds no password)",
    "diverged": "diverged from the primary (timeline {timeline}, primary {primary_timeline})",
    "rewind_possible": "pg_rewind can rewind it ({reason})",
}


_WAL_HOW = {
    "slot_keeps": "its slot keeps it",
    "slot_lost": "its slot lost it",
    "segment_present": "the segment is in pg_wal",
    "segment_removed": "the segment was removed",
    "primary_down": "primary down",
    "position_unknown": "position unknown",
    "waldir_unreadable": "pg_ls_waldir() not readable",
}


_KEEPS_TEXT = {
    "data_dir": "the data directory as it is",
    "auto_conf_copy": "a copy of postgresql.auto.conf",
    "diverged_wal": "the diverged WAL in a side directory",
    "old_data_dir": "the old data directory beside the new one",
}


def _precondition(pre: _Precondition) -> str:
    values = dict(pre.values)
    if "how" in values:
        values["how"] = _WAL_HOW.get(values["how"], values["how"])
    if pre.code == "settings_ok" and values.get("low"):
        values["low"] = f"(below: {values['low']})"
    if pre.code == "rewind_possible":
        reason = _REWIND_REASON.get(values.get("reason", ""), values.get("reason", ""))
        detail = values.get("detail", "").strip().splitlines()
        values["reason"] = reason + (f": {detail[-1][:200]}" if detail else "")
    template = _PRECONDITION_TEXT.get(pre.code, pre.code)
    try:
        text = template.format(**values)
    except KeyError:
        text = pre.code
    return f"{OK if pre.ok else FAIL} {esc(text.strip())}"


def repair_diagnosis(diag: _Diagnosis) -> str:
    """The short diagnosis report."""
    lines = [f"<b>diagnosis of {esc(diag.cluster)}/{esc(diag.node)}</b>"]
    if diag.replica_up:
        role = "in recovery" if diag.in_recovery else "NOT in recovery"
        lines.append(
            f"• up, {role}, {'streaming' if diag.streaming else 'not streaming'}"
            f" ({esc(diag.streaming_seen)}); timeline {esc(diag.timeline or '?')}, "
            f"receive {code(diag.receive_lsn or '–')}, replay {code(diag.replay_lsn or '–')}"
        )
    else:
        server = {True: "running", False: "stopped", None: "state unknown"}[diag.server_running]
        lines.append(f"• does not answer ({esc(diag.replica_error or '?')}); server {server}")
        if diag.controldata is not None:
            cd = diag.controldata
            lines.append(
                f"• pg_controldata: {esc(cd.state or '?')}; REDO {code(cd.redo_lsn or '–')} "
                f"on timeline {esc(cd.timeline or '?')}; system {code(cd.system_identifier)}; "
                f"checksums {'on' if cd.data_checksums else 'off'}, "
                f"wal_log_hints {'on' if cd.wal_log_hints else 'off'}"
            )
    lines.append(
        f"• primary {esc(diag.primary_node)}: "
        + (
            f"timeline {esc(diag.primary_timeline or '?')}, at {code(diag.primary_lsn or '–')}"
            if diag.primary_up
            else "does not answer as a primary"
        )
    )
    slot = f"slot {code(diag.slot)}: " + (
        f"restart_lsn {code(diag.slot_restart_lsn or '–')}, "
        f"wal_status {esc(diag.slot_wal_status or '–')}"
        if diag.slot_exists
        else "missing"
    )
    wal = {True: "still on the primary", False: "GONE from the primary", None: "unknown"}[
        diag.wal_available
    ]
    lines.append(f"• {slot}; WAL it needs: {wal} ({esc(_WAL_HOW.get(diag.wal_note, ''))})")
    conninfo = diag.conninfo
    target = (
        f"{conninfo.host}:{conninfo.port} as {conninfo.user or '?'}"
        if conninfo.present
        else "missing"
    )
    lines.append(
        f"• primary_conninfo {OK if diag.conninfo_ok else FAIL} {esc(target)}; "
        f"primary_slot_name {OK if diag.slot_name_ok else FAIL} "
        f"{code(diag.primary_slot_name or '–')}; "
        f"standby.signal {OK if diag.standby_signal else FAIL + ' missing'}"
    )
    for check in diag.settings:
        if check.too_low:
            lines.append(
                f"• {FAIL} {esc(check.name)} = {esc(check.replica)} is lower than the "
                f"primary's {esc(check.primary)}"
            )
    for refusal in diag.refusals:
        lines.append(
            f"• {FAIL} the server refused to start: {esc(refusal.name)} = {esc(refusal.value)} "
            f"is a lower setting than on the primary, where its value was "
            f"{esc(refusal.primary_value)}"
        )
    return "\n".join(lines)


def _option(option: _RepairOption, chosen: bool) -> str:
    mark = "👉" if chosen else (OK if option.possible else FAIL)
    cost = f"moves {human_bytes(option.bytes_moved)}"
    if option.eta_s is not None:
        rate = human_bytes(int(option.rate_bytes_s))
        source = "measured" if option.rate_source == "measured" else "default rate"
        cost += f", ETA {human_seconds(option.eta_s)} at {rate}/s ({source})"
    keeps = ", ".join(_KEEPS_TEXT.get(k, k) for k in option.keeps)
    lines = [f"{mark} <b>{esc(_PATH_TITLE[option.path])}</b> — {esc(cost)}; keeps {esc(keeps)}"]
    lines.extend(f"   {_precondition(p)}" for p in option.preconditions)
    return "\n".join(lines)


def repair_plan(plan: _Plan) -> str:
    """Every step of a repair plan with the exact action and its undo."""
    lines = [f"<b>plan {esc(plan.kind)} for {esc(plan.cluster)}/{esc(plan.node)}</b>:"]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step.title)}")
        lines.append(f"   <pre>{esc(describe(step.action))}</pre>")
        if step.undo is not None:
            lines.append(f"   undo: {code(describe(step.undo))}")
    if plan.keeps:
        lines.append("kept for a rollback: " + ", ".join(code(k) for k in plan.keeps))
    return "\n".join(lines)


def repair_proposal(proposal: _RepairProposal, dry_run: bool) -> str:
    """Diagnosis, every option with ✅/❌ and why, and the chosen plan's exact steps."""
    node = proposal.diagnosis.node
    if proposal.nothing_to_do:
        head = f"{OK} {esc(node)} streams: nothing to repair"
    elif proposal.chosen is None:
        head = f"{FAIL} no repair path for {esc(node)} is possible now"
    else:
        head = f"🩺 repair of {esc(node)}: <b>{esc(_PATH_TITLE[proposal.chosen])}</b>"
    if dry_run:
        head = f"{INFO} dry run: nothing was changed\n" + head
    parts = [head, repair_diagnosis(proposal.diagnosis)]
    parts.append(
        "<b>paths</b>, cheapest first:\n"
        + "\n".join(_option(o, o.path is proposal.chosen) for o in proposal.options)
    )
    if proposal.plan is not None:
        parts.append(repair_plan(proposal.plan))
    return "\n\n".join(parts)


def repair_full_needed(node: str) -> str:
    """The full path was chosen: the /rebuild plan follows with its own confirmation."""
    return (
        f"{WARN} {esc(node)} needs a full copy: the /rebuild plan follows "
        f"(the same as {code('/rebuild ' + node)})."
    )


def repair_confirm(plan: _Plan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the repair confirmation button."""
    return (
        f"{WARN} <b>Run the {esc(plan.kind.removeprefix('repair.'))} repair of "
        f"{esc(plan.node)}</b> on {esc(plan.host)} ({len(plan.steps)} steps above)?\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def repair_confirmed(plan: _Plan, by: str) -> str:
    """The confirmation message once pressed."""
    return f"{OK} {esc(plan.kind)} of <b>{esc(plan.node)}</b> confirmed by {esc(by)}"


def repair_plan_changed(node: str, diff: Sequence[str]) -> str:
    """The plan computed at the press differs from the approved one: nothing ran."""
    shown = "\n".join(diff) or "(the chosen path is not the one approved)"
    return (
        f"{FAIL} repair of {esc(node)} not started: the plan changed since it was shown. "
        f"Run {code('/repair ' + node)} again.\n<pre>{esc(shown)}</pre>"
    )


def button_repair(node: str) -> str:
    """The label of the repair confirmation button."""
    return f"Repair {node}"


def repair_progress(progress: _RepairProgress) -> str:
    """The live message of a running repair (edited in place)."""
    where = f"{esc(progress.cluster)}/{esc(progress.node)}"
    path = esc(progress.kind.removeprefix("repair."))
    if progress.state == RebuildState.RUNNING.value:
        return (
            f"⏳ repairing {where} ({path}): step {progress.step_index + 1}/"
            f"{progress.step_count}: {esc(progress.step)}"
        )
    if progress.state == RebuildState.SUCCEEDED.value:
        kept = ", ".join(code(k) for k in progress.keeps)
        return f"{OK} repaired {where} ({path}): {esc(progress.detail)}" + (
            f"\nKept: {kept}" if kept else ""
        )
    head = (
        f"🆘 repair of {where} failed and UNDO FAILED: {esc(progress.detail)}"
        if progress.state == RebuildState.ROLLBACK_FAILED.value
        else f"{FAIL} repair of {where} failed, undone: {esc(progress.detail)}"
    )
    lines = [head]
    if progress.undone:
        lines.append("undone: " + ", ".join(esc(u) for u in progress.undone))
    if progress.output:
        lines.append(f"<pre>{esc(progress.output)}</pre>")
    return "\n".join(lines)


def alert_repair_label(alert: Alert) -> str:
    """The Repair button of an alert about a replica."""
    return f"🩺 Repair #{alert.id}"


def repair_button_refused(node: str) -> str:
    """A non-admin pressed an alert's Repair button."""
    return f"only an admin may repair {node}; ask one to press Repair or run /repair {node}"
