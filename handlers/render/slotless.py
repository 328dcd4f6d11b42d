"""Replicas without a slot (issue 12): the /status mark, the slotless_wal alert,
/attachslot and /detachslot."""

from __future__ import annotations

from bot.models import (
    Alert,
    Severity,
    SlotlessRisk,
)
from bot.phrases import Phrase, Value
from bot.services.plans.model import describe
from bot.services.slotless import SlotChangeOutcome, SlotPlan
from handlers.i18n import N_, _
from handlers.render.common import (
    FAIL,
    INFO,
    OK,
    WARN,
    _approver,
    _bytes_figure,
    _expiry,
    code,
    esc,
    human_bytes,
)
from handlers.render.phrases import register, say
from handlers.render.plans import step_title

# the record a slot change's job keeps (bot/services/slotless.py)
register(
    {
        "slotless.interrupted": N_("interrupted"),
        "slotless.done": N_("slot {slot}"),
        "slotless.failed": N_("failed at {step}: {error}"),
        "slotless.dropped": N_("slot {slot} was dropped; nothing undone"),
        "slotless.undo_failed": N_("undo failed: {error}"),
    }
)


def slotless_status_line(risk: SlotlessRisk) -> str:
    """The /status line under a replica that no slot protects."""
    if risk.lost:
        return f"   {FAIL} " + _(
            "no slot, and the WAL it needs from {lsn} is gone from the primary: {command}"
        ).format(lsn=code(risk.replay_lsn or "–"), command=code("/rebuild " + risk.node))
    if risk.margin_bytes is not None and risk.kept_bytes is not None:
        where = _(
            "{margin} ahead of the oldest WAL the primary keeps ({kept}, segment {segment})"
        ).format(
            margin=esc(human_bytes(risk.margin_bytes)),
            kept=esc(human_bytes(risk.kept_bytes)),
            segment=code(risk.oldest_segment or "–"),
        )
    elif risk.waldir_readable is False:
        where = _("oldest WAL on the primary unknown (the bot's role may not call pg_ls_waldir())")
    else:
        where = _("distance to the oldest WAL on the primary unknown")
    return (
        f"   {WARN} "
        + _("no slot: {where}").format(where=where)
        + (f" → {code('/attachslot ' + risk.node)}")
    )


def slotless_alert_headline(alert: Alert) -> str:
    """Headline of a slotless_wal alert."""
    node = esc(alert.node)
    if alert.severity is Severity.CRITICAL:
        return _("replica {node} (no slot) needs WAL the primary has already removed").format(
            node=node
        )
    return _(
        "replica {node} (no slot) is only {margin} ahead of the oldest WAL the primary keeps"
    ).format(node=node, margin=esc(_bytes_figure(alert, "margin")))


def slotless_alert_details(alert: Alert) -> list[str]:
    """Key figures of a slotless_wal alert."""
    f = alert.figures
    connected = _("connected") if f.get("connected") else _("not connected (last known position)")
    return [
        _(
            "position {position} · oldest WAL segment {segment} · primary keeps {kept} · "
            "{connected}"
        ).format(
            position=code(f.get("position") or "–"),
            segment=code(f.get("oldest_segment") or "–"),
            kept=esc(_bytes_figure(alert, "kept")),
            connected=connected,
        ),
        _(
            "wal_keep_size {wal_keep_size} · archive_mode {archive_mode} · warning below "
            "{pct} of the WAL kept"
        ).format(
            wal_keep_size=esc(_bytes_figure(alert, "wal_keep_size")),
            archive_mode=esc(f.get("archive_mode") or "?"),
            pct=esc(f"{f.get('margin_pct')} %"),
        ),
    ]


def slotless_alert_hint(alert: Alert) -> str:
    """What to do about a slotless_wal alert."""
    node = alert.node
    if alert.severity is Severity.CRITICAL:
        return _("it can no longer catch up by streaming: {command}").format(
            command=code("/rebuild " + node)
        )
    return _(
        "let it catch up now, then give it a slot: {command} (the primary then keeps its WAL)"
    ).format(command=code("/attachslot " + node))


def slot_change_plan(planned: SlotPlan) -> str:
    """Every step of an /attachslot or /detachslot plan, with the exact SQL."""
    plan = planned.plan
    lines = [
        "<b>"
        + _("plan for {where}").format(where=f"{esc(plan.cluster)}/{esc(plan.node)}")
        + "</b> "
        + _("(primary {host}):").format(host=esc(plan.host))
    ]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step_title(step))}")
        lines.append(f"   {code(describe(step.action))}")
    return "\n".join(lines)


def _attach_risk(planned: SlotPlan) -> str:
    risk = planned.risk
    if risk is None or risk.margin_bytes is None or risk.kept_bytes is None:
        return ""
    return (
        _("Now it is {margin} ahead of the oldest WAL the primary keeps ({kept}).").format(
            margin=esc(human_bytes(risk.margin_bytes)), kept=esc(human_bytes(risk.kept_bytes))
        )
        + "\n"
    )


def attachslot_dry_run(planned: SlotPlan) -> str:
    """/attachslot --dry-run: the plan; nothing was changed."""
    return (
        f"{INFO} "
        + _("dry run: nothing was changed")
        + "\n"
        + _attach_risk(planned)
        + slot_change_plan(planned)
    )


def attachslot_confirm(planned: SlotPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the /attachslot confirmation button."""
    plan = planned.plan
    return (
        f"{WARN} <b>"
        + _("Give {node} the slot {slot}").format(node=esc(plan.node), slot=code(planned.slot))
        + "</b> "
        + _("on {host}?").format(host=esc(plan.host))
        + "\n"
        + _(
            "The primary will then keep WAL until the replica has it (and for as long as the "
            "slot exists: /detachslot a replica you retire)."
        )
        + "\n"
        + _attach_risk(planned)
        + slot_change_plan(planned)
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def detachslot_confirm(planned: SlotPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the /detachslot confirmation button."""
    plan = planned.plan
    return (
        f"{WARN} <b>"
        + _("Take slot {slot} away from {node}").format(
            slot=code(planned.slot), node=esc(plan.node)
        )
        + "</b> "
        + _("and drop it on {host}?").format(host=esc(plan.host))
        + "\n"
        + _("The replica then streams without a slot: the primary no longer keeps WAL for it.")
        + "\n"
        + slot_change_plan(planned)
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def slot_change_confirmed(planned: SlotPlan, by: str) -> str:
    """The confirmation message once pressed (its buttons are removed)."""
    plan = planned.plan
    return f"{INFO} /{esc(plan.kind)} {esc(plan.node)} " + _("confirmed by {by}; running…").format(
        by=esc(by)
    )


def _remembered(config_line: str, node: str, add: bool) -> str:
    text = (
        _("Add {line} to {node} in the config")
        if add
        else _("Remove {line} from {node} in the config")
    )
    return (
        "\n"
        + text.format(line=code(config_line), node=esc(node))
        + "; "
        + _("until then the bot remembers it only until it restarts.")
    )


def slot_change_outcome(outcome: SlotChangeOutcome) -> str:
    """What /attachslot or /detachslot did, outcome first."""
    where = f"{esc(outcome.cluster)}/{esc(outcome.node)}"
    slot = code(outcome.slot)
    config_line = 'slot = "' + outcome.slot + '"'
    if outcome.ok and outcome.kind == "attachslot" and "edit_auto_conf" in outcome.done:
        text = f"{OK} " + _(
            "slot {slot} created for {where}, which is stopped: primary_slot_name is set in its "
            "postgresql.auto.conf (the original is kept beside it), so it streams through the "
            "slot once started. The slot keeps WAL from now on; what the replica needs from "
            "before may already be gone (/status shows it once it runs)."
        ).format(slot=slot, where=where)
        if not outcome.in_config:
            text += _remembered(config_line, outcome.node, add=True)
        return text
    if outcome.ok and outcome.kind == "attachslot":
        text = f"{OK} " + _(
            "{where} streams through slot {slot}: the primary's walsender for it holds the "
            "slot, and its WAL receiver uses it."
        ).format(slot=slot, where=where)
        if not outcome.in_config:
            text += _remembered(config_line, outcome.node, add=True)
        return text
    if outcome.ok:
        text = f"{OK} " + _("slot {slot} dropped; {where} streams without a slot.").format(
            slot=slot, where=where
        )
        if outcome.in_config:
            text += _remembered(config_line, outcome.node, add=False)
        return text
    lines = [
        f"{FAIL} /{esc(outcome.kind)} {where} "
        + _("failed at {step}: {error}").format(
            step=code(outcome.failed_step or "?"),
            error=esc(_worded(outcome.error) or _("unknown error")),
        )
    ]
    if outcome.undone:
        lines.append(_("undone:") + " " + ", ".join(code(k) for k in outcome.undone))
    if "create_slot" in outcome.undone:
        lines.append(
            _(
                "the slot {slot} this run created was dropped again (it was new and held "
                "nothing the replica needed)"
            ).format(slot=slot)
        )
    for problem in outcome.undo_errors:
        lines.append(f"{WARN} " + _("undo failed: {problem}").format(problem=esc(_worded(problem))))
    if outcome.kind == "detachslot" and "drop_slot" not in outcome.done:
        lines.append(_("slot {slot} was not dropped").format(slot=slot))
    return "\n".join(lines)


def button_attach_slot(node: str) -> str:
    """Label of the /attachslot confirmation button."""
    return _("Attach slot to {node}").format(node=node)


def button_detach_slot(node: str) -> str:
    """Label of the /detachslot confirmation button."""
    return _("Detach and drop slot of {node}").format(node=node)


def _worded(value: Value | None) -> str:
    """An outcome's error: a service's Phrase in the reply's language, a server's text as is."""
    if isinstance(value, Phrase):
        return say(value)
    return "" if value is None else str(value)
