"""Replicas without a slot (issue 12): the /status mark, the slotless_wal alert,
/attachslot and /detachslot."""

from __future__ import annotations

from bot.models import (
    Alert,
    Severity,
    SlotlessRisk,
)
from bot.services.plans.model import describe
from bot.services.slotless import SlotChangeOutcome, SlotPlan
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


def slotless_status_line(risk: SlotlessRisk) -> str:
    """The /status line under a replica that no slot protects."""
    if risk.lost:
        return (
            f"   {FAIL} no slot, and the WAL it needs from {code(risk.replay_lsn or '–')} is gone "
            f"from the primary: {code('/rebuild ' + risk.node)}"
        )
    if risk.margin_bytes is not None and risk.kept_bytes is not None:
        where = (
            f"{esc(human_bytes(risk.margin_bytes))} ahead of the oldest WAL the primary keeps "
            f"({esc(human_bytes(risk.kept_bytes))}, segment {code(risk.oldest_segment or '–')})"
        )
    elif risk.waldir_readable is False:
        where = "oldest WAL on the primary unknown (the bot's role may not call pg_ls_waldir())"
    else:
        where = "distance to the oldest WAL on the primary unknown"
    return f"   {WARN} no slot: {where} → {code('/attachslot ' + risk.node)}"


def slotless_alert_headline(alert: Alert) -> str:
    """Headline of a slotless_wal alert."""
    node = esc(alert.node)
    if alert.severity is Severity.CRITICAL:
        return f"replica {node} (no slot) needs WAL the primary has already removed"
    return (
        f"replica {node} (no slot) is only {esc(_bytes_figure(alert, 'margin'))} ahead of the "
        "oldest WAL the primary keeps"
    )


def slotless_alert_details(alert: Alert) -> list[str]:
    """Key figures of a slotless_wal alert."""
    f = alert.figures
    connected = "connected" if f.get("connected") else "not connected (last known position)"
    return [
        f"position {code(f.get('position') or '–')} · oldest WAL segment "
        f"{code(f.get('oldest_segment') or '–')} · primary keeps "
        f"{esc(_bytes_figure(alert, 'kept'))} · {connected}",
        f"wal_keep_size {esc(_bytes_figure(alert, 'wal_keep_size'))} · archive_mode "
        f"{esc(f.get('archive_mode') or '?')} · warning below "
        f"{esc(f.get('margin_pct'))} % of the WAL kept",
    ]


def slotless_alert_hint(alert: Alert) -> str:
    """What to do about a slotless_wal alert."""
    node = alert.node
    if alert.severity is Severity.CRITICAL:
        return f"it can no longer catch up by streaming: {code('/rebuild ' + node)}"
    return (
        f"let it catch up now, then give it a slot: {code('/attachslot ' + node)} "
        "(the primary then keeps its WAL)"
    )


def slot_change_plan(planned: SlotPlan) -> str:
    """Every step of an /attachslot or /detachslot plan, with the exact SQL."""
    plan = planned.plan
    lines = [f"<b>plan for {esc(plan.cluster)}/{esc(plan.node)}</b> (primary {esc(plan.host)}):"]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step.title)}")
        lines.append(f"   {code(describe(step.action))}")
    return "\n".join(lines)


def _attach_risk(planned: SlotPlan) -> str:
    risk = planned.risk
    if risk is None or risk.margin_bytes is None or risk.kept_bytes is None:
        return ""
    return (
        f"Now it is {esc(human_bytes(risk.margin_bytes))} ahead of the oldest WAL the primary "
        f"keeps ({esc(human_bytes(risk.kept_bytes))}).\n"
    )


def attachslot_dry_run(planned: SlotPlan) -> str:
    """/attachslot --dry-run: the plan; nothing was changed."""
    return (
        f"{INFO} dry run: nothing was changed\n" + _attach_risk(planned) + slot_change_plan(planned)
    )


def attachslot_confirm(planned: SlotPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the /attachslot confirmation button."""
    plan = planned.plan
    return (
        f"{WARN} <b>Give {esc(plan.node)} the slot {code(planned.slot)}</b> on {esc(plan.host)}?\n"
        "The primary will then keep WAL until the replica has it (and for as long as the slot "
        "exists: /detachslot a replica you retire).\n"
        + _attach_risk(planned)
        + slot_change_plan(planned)
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def detachslot_confirm(planned: SlotPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the /detachslot confirmation button."""
    plan = planned.plan
    return (
        f"{WARN} <b>Take slot {code(planned.slot)} away from {esc(plan.node)}</b> and drop it "
        f"on {esc(plan.host)}?\nThe replica then streams without a slot: the primary no longer "
        "keeps WAL for it.\n"
        + slot_change_plan(planned)
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def slot_change_confirmed(planned: SlotPlan, by: str) -> str:
    """The confirmation message once pressed (its buttons are removed)."""
    plan = planned.plan
    return f"{INFO} /{esc(plan.kind)} {esc(plan.node)} confirmed by {esc(by)}; running…"


def slot_change_outcome(outcome: SlotChangeOutcome) -> str:
    """What /attachslot or /detachslot did, outcome first."""
    where = f"{esc(outcome.cluster)}/{esc(outcome.node)}"
    slot = code(outcome.slot)
    config_line = 'slot = "' + outcome.slot + '"'
    if outcome.ok and outcome.kind == "attachslot" and "edit_auto_conf" in outcome.done:
        text = (
            f"{OK} slot {slot} created for {where}, which is stopped: primary_slot_name is set "
            "in its postgresql.auto.conf (the original is kept beside it), so it streams "
            "through the slot once started. The slot keeps WAL from now on; what the replica "
            "needs from before may already be gone (/status shows it once it runs)."
        )
        if not outcome.in_config:
            text += (
                f"\nAdd {code(config_line)} to {esc(outcome.node)} in the config; until then "
                "the bot remembers it only until it restarts."
            )
        return text
    if outcome.ok and outcome.kind == "attachslot":
        text = (
            f"{OK} {where} streams through slot {slot}: the primary's walsender for it holds "
            "the slot, and its WAL receiver uses it."
        )
        if not outcome.in_config:
            text += (
                f"\nAdd {code(config_line)} to {esc(outcome.node)} in the "
                "config; until then the bot remembers it only until it restarts."
            )
        return text
    if outcome.ok:
        text = f"{OK} slot {slot} dropped; {where} streams without a slot."
        if outcome.in_config:
            text += (
                f"\nRemove {code(config_line)} from {esc(outcome.node)} in the "
                "config; until then the bot remembers it only until it restarts."
            )
        return text
    lines = [
        f"{FAIL} /{esc(outcome.kind)} {where} failed at {code(outcome.failed_step or '?')}: "
        f"{esc(outcome.error or 'unknown error')}"
    ]
    if outcome.undone:
        lines.append("undone: " + ", ".join(code(k) for k in outcome.undone))
    if "create_slot" in outcome.undone:
        lines.append(
            f"the slot {slot} this run created was dropped again (it was new and held nothing "
            "the replica needed)"
        )
    for problem in outcome.undo_errors:
        lines.append(f"{WARN} undo failed: {esc(problem)}")
    if outcome.kind == "detachslot" and "drop_slot" not in outcome.done:
        lines.append(f"slot {slot} was not dropped")
    return "\n".join(lines)


def button_attach_slot(node: str) -> str:
    """Label of the /attachslot confirmation button."""
    return f"Attach slot to {node}"


def button_detach_slot(node: str) -> str:
    """Label of the /detachslot confirmation button."""
    return f"Detach and drop slot of {node}"
