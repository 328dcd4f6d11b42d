"""Alert notices, /alerts, /mute, /unmute, the alert buttons and toasts."""

from __future__ import annotations

from collections.abc import Sequence

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


def alert_headline(alert: Alert) -> str:
    """What is wrong, in one escaped line."""
    node, slot, f = esc(alert.node), code(alert.subject), alert.figures
    rule = alert.rule
    if rule is AlertRule.SLOTLESS_WAL:
        return slotless_alert_headline(alert)
    if rule is AlertRule.NODE_DOWN:
        return f"{node} ({esc(f.get('role') or 'node')}) is down"
    if rule is AlertRule.CLUSTER_UNREACHABLE:
        return f"cannot reach any node of cluster {esc(alert.cluster)}"
    if rule is AlertRule.NOT_STREAMING:
        return f"replica {node} is not streaming"
    if rule is AlertRule.BYTE_LAG:
        return f"replica {node} is {esc(_bytes_figure(alert, 'lag_bytes'))} behind the primary"
    if rule is AlertRule.TIME_LAG:
        return f"replica {node} replays {esc(_seconds_figure(alert, 'lag_s'))} behind"
    if rule is AlertRule.SLOT_INACTIVE:
        return f"slot {slot} on {node} is inactive"
    if rule is AlertRule.SLOT_RETAINED:
        return f"slot {slot} keeps {esc(_bytes_figure(alert, 'retained'))} of WAL on {node}"
    if rule is AlertRule.SLOT_AT_RISK:
        if f.get("lost"):
            return f"slot {slot} on {node} lost WAL its replica needs"
        if f.get("wal_status") == "unreserved":
            return f"slot {slot} on {node}: WAL it needs is about to be removed"
        return f"slot {slot} on {node} keeps WAL beyond max_wal_size"
    if rule is AlertRule.ROLE_MISMATCH:
        return (
            f"{node} runs as {esc(f.get('actual') or '?')} but is configured as "
            f"{esc(f.get('configured') or '?')}"
        )
    if rule is AlertRule.ROLE_CHANGE:
        return f"{node} changed from {esc(f.get('was') or '?')} to {esc(f.get('now') or '?')}"
    return f"{node} moved from timeline {esc(f.get('was') or '?')} to {esc(f.get('now') or '?')}"


def _alert_details(alert: Alert) -> list[str]:
    """The key figures (escaped)."""
    rule, f = alert.rule, alert.figures
    if rule is AlertRule.SLOTLESS_WAL:
        return slotless_alert_details(alert)
    if rule in {AlertRule.NODE_DOWN, AlertRule.CLUSTER_UNREACHABLE}:
        return [f"reason: {esc(f.get('reason') or 'unknown')}"]
    if rule is AlertRule.NOT_STREAMING:
        return [
            esc(f.get("reason") or ""),
            f"walsender {esc(f.get('walsender') or '?')} · WAL receiver "
            f"{esc(f.get('receiver') or '?')} · slot {esc(f.get('slot') or '–')}",
        ]
    if rule is AlertRule.BYTE_LAG:
        return [
            f"replay LSN {code(f.get('replay_lsn') or '–')} · warning at "
            f"{esc(_bytes_figure(alert, 'warning'))}, critical at "
            f"{esc(_bytes_figure(alert, 'critical'))}"
        ]
    if rule is AlertRule.TIME_LAG:
        return [
            f"warning at {esc(_seconds_figure(alert, 'warning'))}, critical at "
            f"{esc(_seconds_figure(alert, 'critical'))}"
        ]
    line = (
        f"retains {esc(_bytes_figure(alert, 'retained'))} · wal_status "
        f"{esc(f.get('wal_status') or '–')}"
    )
    if f.get("used_by"):
        line += f" · used by replica {esc(f.get('used_by'))}"
    lines = [line]
    if rule is AlertRule.SLOT_RETAINED:
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
        lines.append(
            f"warning at {esc(_bytes_figure(alert, 'warning'))}, critical at "
            f"{esc(_bytes_figure(alert, 'critical'))}"
        )
    if rule is AlertRule.SLOT_AT_RISK and f.get("invalidation_reason"):
        lines.append(f"invalidated: {esc(f.get('invalidation_reason'))}")
    return lines


def _alert_hint(alert: Alert) -> str:
    """What to do (escaped)."""
    rule, f = alert.rule, alert.figures
    if rule is AlertRule.SLOTLESS_WAL:
        return slotless_alert_hint(alert)
    status = code(f"/status {alert.cluster}")
    job = f.get("rebuild_job")
    if job is not None and rule in {AlertRule.NODE_DOWN, AlertRule.NOT_STREAMING}:
        return (
            f"replbot is rebuilding {esc(alert.node)} (job {esc(job)}): expected until the new "
            f"copy streams; it turns critical if not; {status}"
        )
    if rule is AlertRule.NODE_DOWN:
        return f"check that {esc(alert.node)} runs and accepts connections; {status}"
    if rule is AlertRule.CLUSTER_UNREACHABLE:
        return (
            "when every node fails at once, suspect the bot's own network, DNS or credentials; "
            "this is said once, not repeated"
        )
    if rule is AlertRule.NOT_STREAMING:
        if f.get("basebackup"):
            return f"a pg_basebackup holds slot {esc(f.get('slot'))}: a rebuild is probably running"
        return (
            f"check that {esc(alert.node)} runs and reaches the primary "
            f"(its server log says why); {status}"
        )
    if rule in {AlertRule.BYTE_LAG, AlertRule.TIME_LAG}:
        return f"long queries, I/O or the network slow {esc(alert.node)} down; watch {status}"
    user = f.get("used_by")
    if rule is AlertRule.SLOT_AT_RISK and f.get("lost"):
        if user:
            return f"replica {esc(user)} must be rebuilt: {code(f'/rebuild {user}')}"
        return f"nothing can resume from it: {code(f'/dropslot {alert.subject}')}"
    if rule is AlertRule.SLOT_AT_RISK and f.get("wal_status") == "unreserved":
        return "its replica must catch up now or be rebuilt; max_slot_wal_keep_size buys time"
    if rule in {AlertRule.SLOT_INACTIVE, AlertRule.SLOT_RETAINED, AlertRule.SLOT_AT_RISK}:
        if user:
            return (
                f"the primary's disk fills with WAL until replica {esc(user)} streams again; "
                f"start it, or rebuild it: {code(f'/rebuild {user}')}"
            )
        return (
            "the primary's disk fills with WAL; if nothing uses the slot any more: "
            f"{code(f'/dropslot {alert.subject}')}"
        )
    if rule is AlertRule.ROLE_MISMATCH:
        return f"after a failover, update the bot's config; otherwise check the node: {status}"
    if rule is AlertRule.ROLE_CHANGE:
        return f"a promotion or a demotion happened: {status}"
    return "a promotion happened; replicas must follow the new timeline or be rebuilt"


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
