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
from handlers.i18n import N_, _
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
from handlers.render.phrases import reason_text, say
from handlers.render.plans import said, step_title

REPAIR_USAGE = "/repair NODE [CLUSTER] [--dry-run] [--or-full]"
# The tables are marked with N_ (for the catalog) and translated where they are looked up.
_REWIND_REASON = {
    "not_available": N_("not assessed"),
    "unreachable": N_("the replica's host cannot be reached"),
    "facts_unreadable": N_("its timelines could not be read"),
    "not_diverged": N_("it has not diverged"),
    "divergence_ahead": N_("it is ahead of the primary on the same timeline"),
    "divergence_unrelated": N_("its history shares nothing with the primary's"),
    "target_running": N_("yes; the bytes are known once it is stopped"),
    "dry_run_ok": N_("pg_rewind --dry-run agrees"),
    "dry_run_in_plan": N_("pg_rewind --dry-run is the plan's first check"),
    "dry_run_failed": N_("pg_rewind --dry-run refused"),
    "no_hints": N_("neither wal_log_hints nor data checksums on the replica"),
    "unclean": N_("it was not shut down cleanly"),
    "wal_missing": N_("its own WAL back to the fork is gone"),
    "source_wal_removed": N_("the primary no longer has the WAL from the fork"),
    "not_granted": N_(
        "the source role lacks EXECUTE on pg_ls_dir/pg_stat_file/pg_read_binary_file"
    ),
    "absent": N_("no pg_rewind binary on the replica's host"),
    "running_no_stop_command": N_("it runs and no stop_command is configured"),
    "other_system": N_(
        "its data is another cluster's (system identifier differs from the primary's)"
    ),
}
_PATH_TITLE = {
    _PathName.RESUME: N_("resume"),
    _PathName.PARAMETERS: N_("parameters"),
    _PathName.REWIND: N_("rewind (pg_rewind)"),
    _PathName.FULL: N_("full (/rebuild)"),
}
_PRECONDITION_TEXT = {
    "primary_up": N_("primary {primary} answers as a primary"),
    "same_history": N_(
        "on the primary's history (timeline {timeline}, primary {primary_timeline})"
    ),
    "wal_available": N_("WAL from {needed} still on the primary ({how})"),
    "standby_data": N_("the data is a standby's ({state})"),
    "settings_ok": N_("hot-standby settings ≥ the primary's {low}"),
    "settings_low": N_("a hot-standby setting is below the primary's ({names})"),
    "alter_system_allowed": N_(
        "the bot may ALTER SYSTEM on the running replica (lacks: {missing})"
    ),
    "same_system": N_(
        "the data is the primary's cluster (system identifier {replica}, primary {primary})"
    ),
    "auto_conf_readable": N_("{path} can be edited (readable, holds no password)"),
    "diverged": N_("diverged from the primary (timeline {timeline}, primary {primary_timeline})"),
    "rewind_possible": N_("pg_rewind can rewind it ({reason})"),
}
_WAL_HOW = {
    "slot_keeps": N_("its slot keeps it"),
    "slot_lost": N_("its slot lost it"),
    "segment_present": N_("the segment is in pg_wal"),
    "segment_removed": N_("the segment was removed"),
    "primary_down": N_("primary down"),
    "position_unknown": N_("position unknown"),
    "waldir_unreadable": N_("pg_ls_waldir() not readable"),
}
_KEEPS_TEXT = {
    "data_dir": N_("the data directory as it is"),
    "auto_conf_copy": N_("a copy of postgresql.auto.conf"),
    "diverged_wal": N_("the diverged WAL in a side directory"),
    "old_data_dir": N_("the old data directory beside the new one"),
}


def _looked_up(table: dict[str, str], key: str) -> str:
    """The translated text for ``key``, or the key itself (a code the table lacks)."""
    text = table.get(key)
    return _(text) if text is not None else key


# codes choose.py gives in place of a value (the others are as the servers print them)
_VALUE_CODE = {
    "not_read": N_("not read"),
    "in_recovery": N_("in recovery"),
}


def _precondition(pre: _Precondition) -> str:
    values = dict(pre.values)
    for name in ("missing", "state"):  # alter_system_allowed, standby_data
        if name in values:
            values[name] = _looked_up(_VALUE_CODE, values[name])
    if "how" in values:
        values["how"] = _looked_up(_WAL_HOW, values["how"])
    if pre.code == "settings_ok" and values.get("low"):
        values["low"] = _("(below: {names})").format(names=values["low"])
    if pre.code == "rewind_possible":
        reason = _looked_up(_REWIND_REASON, values.get("reason", ""))
        detail = values.get("detail", "").strip().splitlines()
        values["reason"] = reason + (f": {reason_text(detail[-1][:200])}" if detail else "")
    template = _looked_up(_PRECONDITION_TEXT, pre.code)
    try:
        text = template.format(**values)
    except KeyError:
        text = pre.code
    return f"{OK if pre.ok else FAIL} {esc(text.strip())}"


def _on_off(value: bool) -> str:
    return "on" if value else "off"  # as PostgreSQL prints these settings


def repair_diagnosis(diag: _Diagnosis) -> str:
    """The short diagnosis report."""
    lines = [
        "<b>"
        + _("diagnosis of {where}").format(where=f"{esc(diag.cluster)}/{esc(diag.node)}")
        + "</b>"
    ]
    if diag.replica_up:
        role = _("in recovery") if diag.in_recovery else _("NOT in recovery")
        streaming = _("streaming") if diag.streaming else _("not streaming")
        lines.append(
            "• "
            + _(
                "up, {role}, {streaming} ({seen}); timeline {timeline}, receive {receive}, "
                "replay {replay}"
            ).format(
                role=role,
                streaming=streaming,
                seen=esc(said(diag.streaming_seen)),
                timeline=esc(diag.timeline or "?"),
                receive=code(diag.receive_lsn or "–"),
                replay=code(diag.replay_lsn or "–"),
            )
        )
    else:
        server = {True: _("running"), False: _("stopped"), None: _("state unknown")}[
            diag.server_running
        ]
        lines.append(
            "• "
            + _("does not answer ({error}); server {server}").format(
                error=esc(reason_text(diag.replica_error) or "?"), server=server
            )
        )
        if diag.controldata is not None:
            cd = diag.controldata
            lines.append(
                f"• pg_controldata: {esc(cd.state or '?')}; REDO {code(cd.redo_lsn or '–')} "
                f"timeline {esc(cd.timeline or '?')}; system {code(cd.system_identifier)}; "
                f"data_checksums {_on_off(cd.data_checksums)}, "
                f"wal_log_hints {_on_off(cd.wal_log_hints)}"
            )
    lines.append(
        "• "
        + _("primary {node}:").format(node=esc(diag.primary_node))
        + " "
        + (
            _("timeline {timeline}, at {lsn}").format(
                timeline=esc(diag.primary_timeline or "?"), lsn=code(diag.primary_lsn or "–")
            )
            if diag.primary_up
            else _("does not answer as a primary")
        )
    )
    slot = (
        _("slot {slot}:").format(slot=code(diag.slot))
        + " "
        + (
            f"restart_lsn {code(diag.slot_restart_lsn or '–')}, "
            f"wal_status {esc(diag.slot_wal_status or '–')}"
            if diag.slot_exists
            else _("missing")
        )
    )
    wal = {
        True: _("still on the primary"),
        False: _("GONE from the primary"),
        None: _("unknown"),
    }[diag.wal_available]
    how = _looked_up(_WAL_HOW, diag.wal_note) if diag.wal_note else ""
    lines.append(f"• {slot}; " + _("WAL it needs: {wal}").format(wal=wal) + f" ({esc(how)})")
    conninfo = diag.conninfo
    target = (
        f"{conninfo.host}:{conninfo.port} user={conninfo.user or '?'}"
        if conninfo.present
        else _("missing")
    )
    signal = OK if diag.standby_signal else FAIL + " " + _("missing")
    lines.append(
        f"• primary_conninfo {OK if diag.conninfo_ok else FAIL} {esc(target)}; "
        f"primary_slot_name {OK if diag.slot_name_ok else FAIL} "
        f"{code(diag.primary_slot_name or '–')}; "
        f"standby.signal {signal}"
    )
    for check in diag.settings:
        if check.too_low:
            lines.append(
                f"• {FAIL} "
                + _("{name} = {value} is lower than the primary's {primary}").format(
                    name=esc(check.name), value=esc(check.replica), primary=esc(check.primary)
                )
            )
    for refusal in diag.refusals:
        lines.append(
            f"• {FAIL} "
            + _(
                "the server refused to start: {name} = {value} is a lower setting than on the "
                "primary, where its value was {primary}"
            ).format(
                name=esc(refusal.name),
                value=esc(refusal.value),
                primary=esc(refusal.primary_value),
            )
        )
    return "\n".join(lines)


def _option(option: _RepairOption, chosen: bool) -> str:
    mark = "👉" if chosen else (OK if option.possible else FAIL)
    cost = _("moves {bytes}").format(bytes=human_bytes(option.bytes_moved))
    if option.eta_s is not None:
        rate = human_bytes(int(option.rate_bytes_s))
        source = _("measured") if option.rate_source == "measured" else _("default rate")
        cost += ", " + _("ETA {eta} at {rate}/s ({source})").format(
            eta=human_seconds(option.eta_s), rate=rate, source=source
        )
    keeps = ", ".join(_looked_up(_KEEPS_TEXT, k) for k in option.keeps)
    title = _(_PATH_TITLE[option.path])
    lines = [
        f"{mark} <b>{esc(title)}</b> — {esc(cost)}; " + _("keeps {what}").format(what=esc(keeps))
    ]
    lines.extend(f"   {_precondition(p)}" for p in option.preconditions)
    return "\n".join(lines)


def repair_plan(plan: _Plan) -> str:
    """Every step of a repair plan with the exact action and its undo."""
    lines = [
        "<b>"
        + _("plan {kind} for {where}").format(
            kind=esc(plan.kind), where=f"{esc(plan.cluster)}/{esc(plan.node)}"
        )
        + "</b>:"
    ]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step_title(step))}")
        lines.append(f"   <pre>{esc(describe(step.action))}</pre>")
        if step.undo is not None:
            lines.append("   " + _("undo:") + f" {code(describe(step.undo))}")
    if plan.keeps:
        lines.append(_("kept for a rollback:") + " " + ", ".join(code(k) for k in plan.keeps))
    if plan.info:
        lines.append(
            _("now (may move before the press; not part of the approval):")
            + " "
            + ", ".join(code(f"{k}={v}") for k, v in plan.info)
        )
    return "\n".join(lines)


def repair_proposal(proposal: _RepairProposal, dry_run: bool) -> str:
    """Diagnosis, every option with ✅/❌ and why, and the chosen plan's exact steps."""
    node = proposal.diagnosis.node
    if proposal.nothing_to_do:
        head = f"{OK} " + _("{node} streams: nothing to repair").format(node=esc(node))
    elif proposal.chosen is None:
        head = f"{FAIL} " + _("no repair path for {node} is possible now").format(node=esc(node))
    else:
        head = (
            "🩺 "
            + _("repair of {node}:").format(node=esc(node))
            + (f" <b>{esc(_(_PATH_TITLE[proposal.chosen]))}</b>")
        )
    if dry_run:
        head = f"{INFO} " + _("dry run: nothing was changed") + "\n" + head
    parts = [head, repair_diagnosis(proposal.diagnosis)]
    parts.append(
        "<b>"
        + _("paths")
        + "</b>, "
        + _("cheapest first:")
        + "\n"
        + "\n".join(_option(o, o.path is proposal.chosen) for o in proposal.options)
    )
    if proposal.plan is not None:
        parts.append(repair_plan(proposal.plan))
    return "\n\n".join(parts)


def repair_full_needed(node: str) -> str:
    """The full path was chosen: the /rebuild plan follows with its own confirmation."""
    return f"{WARN} " + _(
        "{node} needs a full copy: the /rebuild plan follows (the same as {command})."
    ).format(node=esc(node), command=code("/rebuild " + node))


def repair_confirm(plan: _Plan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the repair confirmation button."""
    return (
        f"{WARN} <b>"
        + _("Run the {path} repair of {node}").format(
            path=esc(plan.kind.removeprefix("repair.")), node=esc(plan.node)
        )
        + "</b> "
        + _("on {host} ({steps} steps above)?").format(host=esc(plan.host), steps=len(plan.steps))
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def repair_confirmed(plan: _Plan, by: str) -> str:
    """The confirmation message once pressed."""
    return f"{OK} " + _("{kind} of {node} confirmed by {by}").format(
        kind=esc(plan.kind), node=f"<b>{esc(plan.node)}</b>", by=esc(by)
    )


def repair_plan_changed(node: str, diff: Sequence[str]) -> str:
    """The plan computed at the press differs from the approved one: nothing ran."""
    shown = "\n".join(diff) or _("(the chosen path is not the one approved)")
    return (
        f"{FAIL} "
        + _(
            "repair of {node} not started: the plan changed since it was shown. "
            "Run {command} again."
        ).format(node=esc(node), command=code("/repair " + node))
        + f"\n<pre>{esc(shown)}</pre>"
    )


def button_repair(node: str) -> str:
    """The label of the repair confirmation button."""
    return _("Repair {node}").format(node=node)


def repair_progress(progress: _RepairProgress) -> str:
    """The live message of a running repair (edited in place)."""
    where = f"{esc(progress.cluster)}/{esc(progress.node)}"
    path = esc(progress.kind.removeprefix("repair."))
    detail = esc(said(progress.said) or progress.detail)
    if progress.state == RebuildState.RUNNING.value:
        return "⏳ " + _("repairing {where} ({path}): step {index}/{count}: {step}").format(
            where=where,
            path=path,
            index=progress.step_index + 1,
            count=progress.step_count,
            step=esc(say(progress.title) if progress.title else progress.step),
        )
    if progress.state == RebuildState.SUCCEEDED.value:
        kept = ", ".join(code(k) for k in progress.keeps)
        return (
            f"{OK} "
            + _("repaired {where} ({path}): {detail}").format(where=where, path=path, detail=detail)
            + ("\n" + _("Kept: {what}").format(what=kept) if kept else "")
        )
    head = (
        "🆘 "
        + _("repair of {where} failed and UNDO FAILED: {detail}").format(where=where, detail=detail)
        if progress.state == RebuildState.ROLLBACK_FAILED.value
        else f"{FAIL} "
        + _("repair of {where} failed, undone: {detail}").format(where=where, detail=detail)
    )
    lines = [head]
    if progress.undone:
        lines.append(_("undone:") + " " + ", ".join(esc(u) for u in progress.undone))
    if progress.output:
        lines.append(f"<pre>{esc(progress.output)}</pre>")
    return "\n".join(lines)


def alert_repair_label(alert: Alert) -> str:
    """The Repair button of an alert about a replica."""
    return "🩺 " + _("Repair #{id}").format(id=alert.id)


def repair_button_refused(node: str) -> str:
    """A non-admin pressed an alert's Repair button."""
    return _(
        "only an admin may repair {node}; ask one to press Repair or run /repair {node}"
    ).format(node=node)
