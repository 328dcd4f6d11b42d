"""Alert notices, /alerts, /mute, /unmute, the alert buttons and toasts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.models import (
    Alert,
    AlertNotice,
    AlertRule,
    Mute,
    NoticeKind,
    Severity,
)
from handlers.render.common import (
    FAIL,
    INFO,
    OK,
    _bytes_figure,
    _number,
    _seconds_figure,
    code,
    esc,
    human_bytes,
    human_duration,
)
from handlers.render.slotless import (
    slotless_alert_details,
    slotless_alert_headline,
    slotless_alert_hint,
)

_SEVERITY_ICON = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠"}


MUTED_ICON, ACK_ICON, REPEAT_ICON, CHANGE_ICON, ALARM_ICON = "🔕", "👍", "🔁", "🔄", "🚨"


def alert_where(alert: Alert) -> str:
    """'main/pg2', or just 'main' for cluster-wide alerts."""
    return f"{alert.cluster}/{alert.node}" if alert.node else alert.cluster


def _headline_node_down(alert: Alert) -> str:
    return f"{esc(alert.node)} ({esc(alert.figures.get('role') or 'node')}) is down"


def _headline_unreachable(alert: Alert) -> str:
    return f"cannot reach any node of cluster {esc(alert.cluster)}"


def _headline_not_streaming(alert: Alert) -> str:
    return f"replica {esc(alert.node)} is not streaming"


def _headline_byte_lag(alert: Alert) -> str:
    lag = esc(_bytes_figure(alert, "lag_bytes"))
    return f"replica {esc(alert.node)} is {lag} behind the primary"


def _headline_time_lag(alert: Alert) -> str:
    return f"replica {esc(alert.node)} replays {esc(_seconds_figure(alert, 'lag_s'))} behind"


def _headline_slot_inactive(alert: Alert) -> str:
    return f"slot {code(alert.subject)} on {esc(alert.node)} is inactive"


def _headline_slot_retained(alert: Alert) -> str:
    retained = esc(_bytes_figure(alert, "retained"))
    return f"slot {code(alert.subject)} keeps {retained} of WAL on {esc(alert.node)}"


def _headline_slot_at_risk(alert: Alert) -> str:
    slot, node = code(alert.subject), esc(alert.node)
    if alert.figures.get("lost"):
        return f"slot {slot} on {node} lost WAL its replica needs"
    if alert.figures.get("wal_status") == "unreserved":
        return f"slot {slot} on {node}: WAL it needs is about to be removed"
    return f"slot {slot} on {node} keeps WAL beyond max_wal_size"


def _headline_role_mismatch(alert: Alert) -> str:
    f = alert.figures
    return (
        f"{esc(alert.node)} runs as {esc(f.get('actual') or '?')} but is configured as "
        f"{esc(f.get('configured') or '?')}"
    )


def _headline_role_change(alert: Alert) -> str:
    f = alert.figures
    return (
        f"{esc(alert.node)} changed from {esc(f.get('was') or '?')} to {esc(f.get('now') or '?')}"
    )


def _headline_timeline_change(alert: Alert) -> str:
    f = alert.figures
    return (
        f"{esc(alert.node)} moved from timeline {esc(f.get('was') or '?')} to "
        f"{esc(f.get('now') or '?')}"
    )


def _details_reason(alert: Alert) -> list[str]:
    return [f"reason: {esc(alert.figures.get('reason') or 'unknown')}"]


def _details_not_streaming(alert: Alert) -> list[str]:
    f = alert.figures
    return [
        esc(f.get("reason") or ""),
        f"walsender {esc(f.get('walsender') or '?')} · WAL receiver "
        f"{esc(f.get('receiver') or '?')} · slot {esc(f.get('slot') or '–')}",
    ]


def _thresholds(alert: Alert, figure: Callable[[Alert, str], str]) -> str:
    return (
        f"warning at {esc(figure(alert, 'warning'))}, critical at {esc(figure(alert, 'critical'))}"
    )


def _details_byte_lag(alert: Alert) -> list[str]:
    replay = code(alert.figures.get("replay_lsn") or "–")
    return [f"replay LSN {replay} · {_thresholds(alert, _bytes_figure)}"]


def _details_time_lag(alert: Alert) -> list[str]:
    return [_thresholds(alert, _seconds_figure)]


def _details_slot(alert: Alert) -> list[str]:
    f = alert.figures
    line = (
        f"retains {esc(_bytes_figure(alert, 'retained'))} · wal_status "
        f"{esc(f.get('wal_status') or '–')}"
    )
    if f.get("used_by"):
        line += f" · used by replica {esc(f.get('used_by'))}"
    lines = [line]
    if alert.rule is AlertRule.SLOT_RETAINED:
        rate = _number(alert, "rate")
        if rate is not None and rate > 0:
            growth = f"growing {esc(human_bytes(int(rate)))}/s"
            if _number(alert, "eta_lost_s") is not None:
                growth += (
                    f"; its WAL is removed (wal_status lost) in about "
                    f"{esc(_seconds_figure(alert, 'eta_lost_s'))}"
                    f" (safe_wal_size {esc(_bytes_figure(alert, 'safe_wal_size'))})"
                )
            lines.append(growth)
        lines.append(_thresholds(alert, _bytes_figure))
    if alert.rule is AlertRule.SLOT_AT_RISK and f.get("invalidation_reason"):
        lines.append(f"invalidated: {esc(f.get('invalidation_reason'))}")
    return lines


def _no_details(alert: Alert) -> list[str]:
    return []


def _status_cmd(alert: Alert) -> str:
    return code(f"/status {alert.cluster}")


def _rebuilding(alert: Alert) -> str | None:
    """The hint while replbot's own rebuild explains a down or not-streaming replica."""
    job = alert.figures.get("rebuild_job")
    if job is None:
        return None
    return (
        f"replbot is rebuilding {esc(alert.node)} (job {esc(job)}): expected until the new "
        f"copy streams; it turns critical if not; {_status_cmd(alert)}"
    )


def _hint_node_down(alert: Alert) -> str:
    return _rebuilding(alert) or (
        f"check that {esc(alert.node)} runs and accepts connections; {_status_cmd(alert)}"
    )


def _hint_unreachable(alert: Alert) -> str:
    return (
        "when every node fails at once, suspect the bot's own network, DNS or credentials; "
        "this is said once, not repeated"
    )


def _hint_not_streaming(alert: Alert) -> str:
    rebuilding = _rebuilding(alert)
    if rebuilding is not None:
        return rebuilding
    f = alert.figures
    if f.get("basebackup"):
        return f"a pg_basebackup holds slot {esc(f.get('slot'))}: a rebuild is probably running"
    return (
        f"check that {esc(alert.node)} runs and reaches the primary "
        f"(its server log says why); {_status_cmd(alert)}"
    )


def _hint_lag(alert: Alert) -> str:
    return (
        f"long queries, I/O or the network slow {esc(alert.node)} down; watch {_status_cmd(alert)}"
    )


def _hint_slot(alert: Alert) -> str:
    f = alert.figures
    user = f.get("used_by")
    if alert.rule is AlertRule.SLOT_AT_RISK and f.get("lost"):
        if user:
            return f"replica {esc(user)} must be rebuilt: {code(f'/rebuild {user}')}"
        return f"nothing can resume from it: {code(f'/dropslot {alert.subject}')}"
    if alert.rule is AlertRule.SLOT_AT_RISK and f.get("wal_status") == "unreserved":
        return "its replica must catch up now or be rebuilt; max_slot_wal_keep_size buys time"
    if user:
        return (
            f"the primary's disk fills with WAL until replica {esc(user)} streams again; "
            f"start it, or rebuild it: {code(f'/rebuild {user}')}"
        )
    return (
        "the primary's disk fills with WAL; if nothing uses the slot any more: "
        f"{code(f'/dropslot {alert.subject}')}"
    )


def _hint_role_mismatch(alert: Alert) -> str:
    return (
        f"after a failover, update the bot's config; otherwise check the node: {_status_cmd(alert)}"
    )


def _hint_role_change(alert: Alert) -> str:
    return f"a promotion or a demotion happened: {_status_cmd(alert)}"


def _hint_timeline_change(alert: Alert) -> str:
    return "a promotion happened; replicas must follow the new timeline or be rebuilt"


@dataclass(frozen=True)
class RuleText:
    """How one alert rule is worded: what is wrong, the key figures, what to do (all escaped)."""

    headline: Callable[[Alert], str]
    details: Callable[[Alert], list[str]]
    hint: Callable[[Alert], str]


RULE_TEXT: dict[AlertRule, RuleText] = {
    AlertRule.NODE_DOWN: RuleText(_headline_node_down, _details_reason, _hint_node_down),
    AlertRule.CLUSTER_UNREACHABLE: RuleText(
        _headline_unreachable, _details_reason, _hint_unreachable
    ),
    AlertRule.NOT_STREAMING: RuleText(
        _headline_not_streaming, _details_not_streaming, _hint_not_streaming
    ),
    AlertRule.BYTE_LAG: RuleText(_headline_byte_lag, _details_byte_lag, _hint_lag),
    AlertRule.TIME_LAG: RuleText(_headline_time_lag, _details_time_lag, _hint_lag),
    AlertRule.SLOT_INACTIVE: RuleText(_headline_slot_inactive, _details_slot, _hint_slot),
    AlertRule.SLOT_RETAINED: RuleText(_headline_slot_retained, _details_slot, _hint_slot),
    AlertRule.SLOT_AT_RISK: RuleText(_headline_slot_at_risk, _details_slot, _hint_slot),
    AlertRule.ROLE_MISMATCH: RuleText(_headline_role_mismatch, _no_details, _hint_role_mismatch),
    AlertRule.ROLE_CHANGE: RuleText(_headline_role_change, _no_details, _hint_role_change),
    AlertRule.TIMELINE_CHANGE: RuleText(
        _headline_timeline_change, _no_details, _hint_timeline_change
    ),
    AlertRule.SLOTLESS_WAL: RuleText(
        slotless_alert_headline, slotless_alert_details, slotless_alert_hint
    ),
}
"""Every rule's wording; a unit test checks each AlertRule has an entry."""


def alert_headline(alert: Alert) -> str:
    """What is wrong, in one escaped line."""
    return RULE_TEXT[alert.rule].headline(alert)


def _alert_details(alert: Alert) -> list[str]:
    """The key figures (escaped)."""
    return RULE_TEXT[alert.rule].details(alert)


def _alert_hint(alert: Alert) -> str:
    """What to do (escaped)."""
    return RULE_TEXT[alert.rule].hint(alert)


def alert_notice(notice: AlertNotice) -> str:
    """One alert in a message: headline, key figures, what to do."""
    alert = notice.alert
    where = f"<b>{esc(alert_where(alert))}</b>"
    icon = _SEVERITY_ICON[alert.severity]
    level = alert.severity.value.upper()
    headline = alert_headline(alert)
    if notice.kind is NoticeKind.RESOLVED:
        lasted = (alert.resolved_at or notice.at) - alert.first_seen
        return (
            f"{OK} <b>RESOLVED</b> {where}: {headline}\n"
            f"   lasted {esc(human_duration(lasted))} · alert #{alert.id}"
        )
    if notice.kind is NoticeKind.EVENT:
        return f"{CHANGE_ICON} {icon} {where}: {headline}\n   → {_alert_hint(alert)}"
    if notice.kind is NoticeKind.REPEAT:
        head = f"{REPEAT_ICON} still firing · {icon} <b>{level}</b> {where}: {headline}"
    elif notice.kind is NoticeKind.ESCALATED:
        head = f"{icon} now <b>{level}</b> {where}: {headline}"
    else:
        head = f"{icon} <b>{level}</b> {where}: {headline}"
    lines = [head]
    lines.extend(f"   {line}" for line in _alert_details(alert) if line)
    lines.append(f"   → {_alert_hint(alert)}")
    age = notice.at - alert.first_seen
    lines.append(
        f"   alert #{alert.id}" + (f" · for {esc(human_duration(age))}" if age >= 1 else "")
    )
    return "\n".join(lines)


def alert_header(notices: Sequence[AlertNotice]) -> str:
    """The first line of a message that groups several notices."""
    resolved = sum(1 for n in notices if n.kind is NoticeKind.RESOLVED)
    firing = len(notices) - resolved
    parts = []
    if firing:
        parts.append(f"{firing} alert(s)")
    if resolved:
        parts.append(f"{resolved} resolved")
    clusters = ", ".join(sorted({n.alert.cluster for n in notices}))
    return f"{ALARM_ICON} {' and '.join(parts)} · {esc(clusters)}"


def alert_button_labels(alert: Alert, mute_s: float) -> tuple[str, str]:
    """Labels of the Acknowledge and Mute buttons of an alert (plain text)."""
    return f"{ACK_ICON} Ack #{alert.id}", f"{MUTED_ICON} Mute {human_duration(mute_s)} #{alert.id}"


def alerts_firing(alerts: Sequence[Alert], mutes: Sequence[Mute], now: float) -> str:
    """The /alerts reply: what fires, acknowledged or muted, and the mutes in force."""
    if alerts:
        lines = [f"{ALARM_ICON} {len(alerts)} alert(s) firing"]
    else:
        lines = [f"{OK} no alerts firing"]
    for alert in alerts:
        line = (
            f"{_SEVERITY_ICON[alert.severity]} #{alert.id} <b>{esc(alert_where(alert))}</b>: "
            f"{alert_headline(alert)} · for {esc(human_duration(now - alert.first_seen))}"
        )
        if alert.acked_by:
            line += f" · {ACK_ICON} {esc(alert.acked_by)}"
        if alert.muted_until is not None and alert.muted_until > now:
            line += f" · {MUTED_ICON} {esc(human_duration(alert.muted_until - now))}"
        lines.append(line)
    for mute in mutes:
        target = f"{mute.cluster}/{mute.node}" if mute.node else f"cluster {mute.cluster}"
        lines.append(
            f"{MUTED_ICON} muted: {esc(target)} for {esc(human_duration(mute.until - now))} more"
            f" (by {esc(mute.by)})"
        )
    return "\n".join(lines)


def alert_acknowledged(alert: Alert) -> str:
    """Reply to the Acknowledge button."""
    return (
        f"{ACK_ICON} alert #{alert.id} ({esc(alert_where(alert))}: {alert_headline(alert)}) "
        f"acknowledged by {esc(alert.acked_by or '?')}: no more repeats; "
        "its resolution will still be announced"
    )


def alert_muted(alert: Alert, now: float) -> str:
    """Reply to the Mute button."""
    left = (alert.muted_until or now) - now
    return (
        f"{MUTED_ICON} alert #{alert.id} ({esc(alert_where(alert))}: {alert_headline(alert)}) "
        f"muted for {esc(human_duration(left))}: no repeats and no resolved message until then"
    )


def target_muted(cluster: str, node: str | None, duration_s: float) -> str:
    """Reply to /mute."""
    target = f"{cluster}/{node}" if node else f"cluster {cluster}"
    return (
        f"{MUTED_ICON} muted {esc(target)} for {esc(human_duration(duration_s))}: its alerts are "
        "still recorded (see /alerts) but not announced"
    )


def target_unmuted(cluster: str, node: str | None, ended: int) -> str:
    """Reply to /unmute."""
    target = f"{cluster}/{node}" if node else f"cluster {cluster}"
    if ended == 0:
        return f"{INFO} {esc(target)} was not muted"
    return f"🔔 unmuted {esc(target)} ({ended} mute(s) ended)"


def alerts_unavailable() -> str:
    """/alerts, /mute, /unmute when the bot runs without a monitor."""
    return f"{INFO} the alert monitor is not part of this bot"


def alert_chat_refusing(chat_id: int, reason: str, fallback: int | None) -> str:
    """Notice to the other alert chats (once per chat) that ``chat_id`` refuses the bot."""
    where = (
        f"its alerts go to chat {code(fallback)} instead"
        if fallback is not None
        else "its alerts are not delivered (no telegram.alert_fallback_chat_id)"
    )
    return (
        f"{FAIL} <b>alert chat {code(chat_id)} refuses the bot</b>: {esc(reason)}\n"
        f"   → {where}; add the bot to that chat again, or change alert_chat_ids"
    )


def alert_redirected(chat_id: int) -> str:
    """First line of an alert message re-sent to the fallback chat."""
    return f"↪️ meant for alert chat {code(chat_id)}, which refuses the bot:"


def toast_alert_acknowledged(alert_id: int) -> str:
    """Toast answering an Ack button."""
    return f"alert #{alert_id} acknowledged"


def toast_alert_muted(alert_id: int) -> str:
    """Toast answering a Mute button."""
    return f"alert #{alert_id} muted"
