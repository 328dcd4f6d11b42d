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
from handlers.i18n import N_, _, ngettext
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
from handlers.render.phrases import reason_text
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
    role = alert.figures.get("role")
    return _("{node} ({role}) is down").format(node=esc(alert.node), role=esc(role or _("node")))


def _headline_unreachable(alert: Alert) -> str:
    return _("cannot reach any node of cluster {cluster}").format(cluster=esc(alert.cluster))


def _headline_not_streaming(alert: Alert) -> str:
    return _("replica {node} is not streaming").format(node=esc(alert.node))


def _headline_byte_lag(alert: Alert) -> str:
    return _("replica {node} is {lag} behind the primary").format(
        node=esc(alert.node), lag=esc(_bytes_figure(alert, "lag_bytes"))
    )


def _headline_time_lag(alert: Alert) -> str:
    return _("replica {node} replays {lag} behind").format(
        node=esc(alert.node), lag=esc(_seconds_figure(alert, "lag_s"))
    )


def _headline_slot_inactive(alert: Alert) -> str:
    return _("slot {slot} on {node} is inactive").format(
        slot=code(alert.subject), node=esc(alert.node)
    )


def _headline_slot_retained(alert: Alert) -> str:
    return _("slot {slot} keeps {bytes} of WAL on {node}").format(
        slot=code(alert.subject), bytes=esc(_bytes_figure(alert, "retained")), node=esc(alert.node)
    )


def _headline_slot_at_risk(alert: Alert) -> str:
    if alert.figures.get("lost"):
        text = _("slot {slot} on {node} lost WAL its replica needs")
    elif alert.figures.get("wal_status") == "unreserved":
        text = _("slot {slot} on {node}: WAL it needs is about to be removed")
    else:
        text = _("slot {slot} on {node} keeps WAL beyond max_wal_size")
    return text.format(slot=code(alert.subject), node=esc(alert.node))


def _headline_role_mismatch(alert: Alert) -> str:
    f = alert.figures
    return _("{node} runs as {actual} but is configured as {configured}").format(
        node=esc(alert.node),
        actual=esc(f.get("actual") or "?"),
        configured=esc(f.get("configured") or "?"),
    )


def _headline_role_change(alert: Alert) -> str:
    f = alert.figures
    return _("{node} changed from {was} to {now}").format(
        node=esc(alert.node), was=esc(f.get("was") or "?"), now=esc(f.get("now") or "?")
    )


def _headline_timeline_change(alert: Alert) -> str:
    f = alert.figures
    return _("{node} moved from timeline {was} to {now}").format(
        node=esc(alert.node), was=esc(f.get("was") or "?"), now=esc(f.get("now") or "?")
    )


def _details_reason(alert: Alert) -> list[str]:
    reason = reason_text(str(alert.figures.get("reason") or "")) or _("unknown")
    return [_("reason: {reason}").format(reason=esc(reason))]


# what the monitor records when there is no PostgreSQL state to quote (monitor/rules.py)
_NO_STATE = {"absent": N_("absent"), "not running": N_("not running"), "unknown": N_("unknown")}


def _state(value: object) -> str:
    text = str(value or "?")
    return _(_NO_STATE[text]) if text in _NO_STATE else text


def _not_streaming_reason(walsender: str, receiver: str) -> str:
    """Why the replica counts as not streaming, from the two states the monitor recorded."""
    problems = []
    if walsender == "absent":
        problems.append(_("absent from pg_stat_replication on the primary"))
    elif walsender not in ("streaming", "?"):
        problems.append(_("walsender state is {state}").format(state=_state(walsender)))
    if receiver not in ("streaming", "unknown", "?"):
        problems.append(_("WAL receiver is {state}").format(state=_state(receiver)))
    return "; ".join(problems)


def _details_not_streaming(alert: Alert) -> list[str]:
    f = alert.figures
    walsender, receiver = str(f.get("walsender") or "?"), str(f.get("receiver") or "?")
    reason = _not_streaming_reason(walsender, receiver)
    return [
        *([esc(reason)] if reason else []),
        _("walsender {walsender} · WAL receiver {receiver} · slot {slot}").format(
            walsender=esc(_state(walsender)),
            receiver=esc(_state(receiver)),
            slot=esc(f.get("slot") or "–"),
        ),
    ]


def _thresholds(alert: Alert, figure: Callable[[Alert, str], str]) -> str:
    return _("warning at {warning}, critical at {critical}").format(
        warning=esc(figure(alert, "warning")), critical=esc(figure(alert, "critical"))
    )


def _details_byte_lag(alert: Alert) -> list[str]:
    replay = code(alert.figures.get("replay_lsn") or "–")
    return [_("replay LSN {lsn}").format(lsn=replay) + " · " + _thresholds(alert, _bytes_figure)]


def _details_time_lag(alert: Alert) -> list[str]:
    return [_thresholds(alert, _seconds_figure)]


def _details_slot(alert: Alert) -> list[str]:
    f = alert.figures
    line = _("retains {bytes} · wal_status {wal_status}").format(
        bytes=esc(_bytes_figure(alert, "retained")), wal_status=esc(f.get("wal_status") or "–")
    )
    if f.get("used_by"):
        line += " · " + _("used by replica {replica}").format(replica=esc(f.get("used_by")))
    lines = [line]
    if alert.rule is AlertRule.SLOT_RETAINED:
        rate = _number(alert, "rate")
        if rate is not None and rate > 0:
            growth = _("growing {rate}/s").format(rate=esc(human_bytes(int(rate))))
            if _number(alert, "eta_lost_s") is not None:
                growth += "; " + _(
                    "its WAL is removed (wal_status lost) in about {eta} (safe_wal_size {safe})"
                ).format(
                    eta=esc(_seconds_figure(alert, "eta_lost_s")),
                    safe=esc(_bytes_figure(alert, "safe_wal_size")),
                )
            lines.append(growth)
        lines.append(_thresholds(alert, _bytes_figure))
    if alert.rule is AlertRule.SLOT_AT_RISK and f.get("invalidation_reason"):
        lines.append(_("invalidated: {reason}").format(reason=esc(f.get("invalidation_reason"))))
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
    return _(
        "replbot is rebuilding or repairing {node} (job {job}): expected until it streams "
        "again; it turns critical if not; {status}"
    ).format(node=esc(alert.node), job=esc(job), status=_status_cmd(alert))


def _hint_node_down(alert: Alert) -> str:
    return _rebuilding(alert) or _(
        "check that {node} runs and accepts connections; {status}"
    ).format(node=esc(alert.node), status=_status_cmd(alert))


def _hint_unreachable(alert: Alert) -> str:
    return _(
        "when every node fails at once, suspect the bot's own network, DNS or credentials; "
        "this is said once, not repeated"
    )


def _hint_not_streaming(alert: Alert) -> str:
    rebuilding = _rebuilding(alert)
    if rebuilding is not None:
        return rebuilding
    f = alert.figures
    if f.get("basebackup"):
        return _("a pg_basebackup holds slot {slot}: a rebuild is probably running").format(
            slot=esc(f.get("slot"))
        )
    return _(
        "check that {node} runs and reaches the primary (its server log says why); {status}"
    ).format(node=esc(alert.node), status=_status_cmd(alert))


def _hint_lag(alert: Alert) -> str:
    return _("long queries, I/O or the network slow {node} down; watch {status}").format(
        node=esc(alert.node), status=_status_cmd(alert)
    )


def _hint_slot(alert: Alert) -> str:
    f = alert.figures
    user = f.get("used_by")
    drop = code(f"/dropslot {alert.subject}")
    if alert.rule is AlertRule.SLOT_AT_RISK and f.get("lost"):
        if user:
            return _("replica {replica} must be rebuilt: {command}").format(
                replica=esc(user), command=code(f"/rebuild {user}")
            )
        return _("nothing can resume from it: {command}").format(command=drop)
    if alert.rule is AlertRule.SLOT_AT_RISK and f.get("wal_status") == "unreserved":
        return _("its replica must catch up now or be rebuilt; max_slot_wal_keep_size buys time")
    if user:
        return _(
            "the primary's disk fills with WAL until replica {replica} streams again; "
            "start it, or rebuild it: {command}"
        ).format(replica=esc(user), command=code(f"/rebuild {user}"))
    return _(
        "the primary's disk fills with WAL; if nothing uses the slot any more: {command}"
    ).format(command=drop)


def _hint_role_mismatch(alert: Alert) -> str:
    return _(
        "after a failover, update the bot's config; otherwise check the node: {status}"
    ).format(status=_status_cmd(alert))


def _hint_role_change(alert: Alert) -> str:
    return _("a promotion or a demotion happened: {status}").format(status=_status_cmd(alert))


def _hint_timeline_change(alert: Alert) -> str:
    return _("a promotion happened; replicas must follow the new timeline or be rebuilt")


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


def _level(alert: Alert) -> str:
    return _("CRITICAL") if alert.severity is Severity.CRITICAL else _("WARNING")


def alert_notice(notice: AlertNotice) -> str:
    """One alert in a message: headline, key figures, what to do."""
    alert = notice.alert
    where = f"<b>{esc(alert_where(alert))}</b>"
    icon = _SEVERITY_ICON[alert.severity]
    level = _level(alert)
    headline = alert_headline(alert)
    if notice.kind is NoticeKind.RESOLVED:
        lasted = (alert.resolved_at or notice.at) - alert.first_seen
        resolved = _("RESOLVED")
        return f"{OK} <b>{resolved}</b> {where}: {headline}\n   " + _(
            "lasted {duration} · alert #{id}"
        ).format(duration=esc(human_duration(lasted)), id=alert.id)
    if notice.kind is NoticeKind.EVENT:
        return f"{CHANGE_ICON} {icon} {where}: {headline}\n   → {_alert_hint(alert)}"
    if notice.kind is NoticeKind.REPEAT:
        head = (
            f"{REPEAT_ICON} " + _("still firing") + f" · {icon} <b>{level}</b> {where}: {headline}"
        )
    elif notice.kind is NoticeKind.ESCALATED:
        head = (
            f"{icon} " + _("now {level}").format(level=f"<b>{level}</b>") + f" {where}: {headline}"
        )
    else:
        head = f"{icon} <b>{level}</b> {where}: {headline}"
    lines = [head]
    lines.extend(f"   {line}" for line in _alert_details(alert) if line)
    lines.append(f"   → {_alert_hint(alert)}")
    age = notice.at - alert.first_seen
    footer = _("alert #{id}").format(id=alert.id)
    if age >= 1:
        footer += " · " + _("for {duration}").format(duration=esc(human_duration(age)))
    lines.append(f"   {footer}")
    return "\n".join(lines)


def alert_header(notices: Sequence[AlertNotice]) -> str:
    """The first line of a message that groups several notices."""
    resolved = sum(1 for n in notices if n.kind is NoticeKind.RESOLVED)
    firing = len(notices) - resolved
    parts = []
    if firing:
        parts.append(ngettext("{n} alert", "{n} alerts", firing).format(n=firing))
    if resolved:
        parts.append(ngettext("{n} resolved", "{n} resolved", resolved).format(n=resolved))
    clusters = ", ".join(sorted({n.alert.cluster for n in notices}))
    joined = (" " + _("and") + " ").join(parts)
    return f"{ALARM_ICON} {joined} · {esc(clusters)}"


def alert_button_labels(alert: Alert, mute_s: float) -> tuple[str, str]:
    """Labels of the Acknowledge and Mute buttons of an alert (plain text)."""
    return (
        f"{ACK_ICON} " + _("Ack #{id}").format(id=alert.id),
        f"{MUTED_ICON} "
        + _("Mute {duration} #{id}").format(duration=human_duration(mute_s), id=alert.id),
    )


def _target(cluster: str, node: str | None) -> str:
    return f"{cluster}/{node}" if node else _("cluster {cluster}").format(cluster=cluster)


def alerts_firing(alerts: Sequence[Alert], mutes: Sequence[Mute], now: float) -> str:
    """The /alerts reply: what fires, acknowledged or muted, and the mutes in force."""
    if alerts:
        count = len(alerts)
        lines = [
            f"{ALARM_ICON} "
            + ngettext("{n} alert firing", "{n} alerts firing", count).format(n=count)
        ]
    else:
        lines = [f"{OK} " + _("no alerts firing")]
    for alert in alerts:
        line = (
            f"{_SEVERITY_ICON[alert.severity]} #{alert.id} <b>{esc(alert_where(alert))}</b>: "
            f"{alert_headline(alert)} · "
            + _("for {duration}").format(duration=esc(human_duration(now - alert.first_seen)))
        )
        if alert.acked_by:
            line += f" · {ACK_ICON} {esc(alert.acked_by)}"
        if alert.muted_until is not None and alert.muted_until > now:
            line += f" · {MUTED_ICON} {esc(human_duration(alert.muted_until - now))}"
        lines.append(line)
    for mute in mutes:
        lines.append(
            f"{MUTED_ICON} "
            + _("muted: {target} for {duration} more (by {by})").format(
                target=esc(_target(mute.cluster, mute.node)),
                duration=esc(human_duration(mute.until - now)),
                by=esc(mute.by),
            )
        )
    return "\n".join(lines)


def alert_acknowledged(alert: Alert) -> str:
    """Reply to the Acknowledge button."""
    return f"{ACK_ICON} " + _(
        "alert #{id} ({where}: {headline}) acknowledged by {by}: no more repeats; "
        "its resolution will still be announced"
    ).format(
        id=alert.id,
        where=esc(alert_where(alert)),
        headline=alert_headline(alert),
        by=esc(alert.acked_by or "?"),
    )


def alert_muted(alert: Alert, now: float) -> str:
    """Reply to the Mute button."""
    left = (alert.muted_until or now) - now
    return f"{MUTED_ICON} " + _(
        "alert #{id} ({where}: {headline}) muted for {duration}: no repeats and no resolved "
        "message until then"
    ).format(
        id=alert.id,
        where=esc(alert_where(alert)),
        headline=alert_headline(alert),
        duration=esc(human_duration(left)),
    )


def target_muted(cluster: str, node: str | None, duration_s: float) -> str:
    """Reply to /mute."""
    return f"{MUTED_ICON} " + _(
        "muted {target} for {duration}: its alerts are still recorded (see /alerts) but not "
        "announced"
    ).format(target=esc(_target(cluster, node)), duration=esc(human_duration(duration_s)))


def target_unmuted(cluster: str, node: str | None, ended: int) -> str:
    """Reply to /unmute."""
    target = esc(_target(cluster, node))
    if ended == 0:
        return f"{INFO} " + _("{target} was not muted").format(target=target)
    return "🔔 " + ngettext(
        "unmuted {target} ({n} mute ended)", "unmuted {target} ({n} mutes ended)", ended
    ).format(target=target, n=ended)


def alerts_unavailable() -> str:
    """/alerts, /mute, /unmute when the bot runs without a monitor."""
    return f"{INFO} " + _("the alert monitor is not part of this bot")


def alert_chat_refusing(chat_id: int, reason: str, fallback: int | None) -> str:
    """Notice to the other alert chats (once per chat) that ``chat_id`` refuses the bot."""
    where = (
        _("its alerts go to chat {chat} instead").format(chat=code(fallback))
        if fallback is not None
        else _("its alerts are not delivered (no telegram.alert_fallback_chat_id)")
    )
    return (
        f"{FAIL} <b>"
        + _("alert chat {chat} refuses the bot").format(chat=code(chat_id))
        + f"</b>: {esc(reason)}\n   → "
        + _("{where}; add the bot to that chat again, or change alert_chat_ids").format(where=where)
    )


def alert_redirected(chat_id: int) -> str:
    """First line of an alert message re-sent to the fallback chat."""
    return "↪️ " + _("meant for alert chat {chat}, which refuses the bot:").format(
        chat=code(chat_id)
    )


def toast_alert_acknowledged(alert_id: int) -> str:
    """Toast answering an Ack button."""
    return _("alert #{id} acknowledged").format(id=alert_id)


def toast_alert_muted(alert_id: int) -> str:
    """Toast answering a Mute button."""
    return _("alert #{id} muted").format(id=alert_id)
