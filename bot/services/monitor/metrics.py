"""In-process metrics and their Prometheus text exposition (no client library needed).

Gauges and counters keyed by label sets; collectors refresh gauges right before a scrape.
Label values are escaped as the exposition format requires. Command names are counted only
for commands the bot has: a user typing ``/anything`` must not create a new time series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bot.models import AuditEntry, AuditRecord, AuditVerification, Outcome
from bot.ports import AuditLog

Labels = tuple[tuple[str, str], ...]

FAMILIES: dict[str, tuple[str, str]] = {
    "replbot_node_up": ("gauge", "1 when the node answered the last poll, else 0"),
    "replbot_poll_duration_seconds": ("gauge", "Duration of the last poll of the node"),
    "replbot_polls_total": ("counter", "Polls of the node by result"),
    "replbot_replica_lag_bytes": ("gauge", "Primary's current LSN minus the replica's replay LSN"),
    "replbot_replica_lag_seconds": (
        "gauge",
        "Replay lag of the replica (0 when it replayed all it received)",
    ),
    "replbot_replica_streaming": ("gauge", "1 when the replica streams from the primary"),
    "replbot_slot_retained_bytes": ("gauge", "WAL the slot keeps on the primary"),
    "replbot_slot_active": ("gauge", "1 when the slot is in use"),
    "replbot_alerts_firing": ("gauge", "Firing alerts by cluster and severity"),
    "replbot_alert_messages_pending": ("gauge", "Alert messages waiting in the outbox"),
    "replbot_alert_messages_sent_total": ("counter", "Alert messages delivered"),
    "replbot_alert_send_failures_total": ("counter", "Failed attempts to deliver alert messages"),
    "replbot_alert_chat_refusing": (
        "gauge",
        "1 while the alert chat refuses the bot (kicked, blocked, chat not found), else 0",
    ),
    "replbot_alert_chat_refusals_total": ("counter", "Alert messages the chat refused for good"),
    "replbot_alert_chat_migrations_total": (
        "counter",
        "Alert chats followed to the supergroup they became",
    ),
    "replbot_alert_token_rejected": (
        "gauge",
        "1 while Telegram refuses the bot's token (401): no alert can be delivered",
    ),
    "replbot_alert_token_rejections_total": ("counter", "Sends refused with 401 Unauthorized"),
    "replbot_monitor_rounds_total": ("counter", "Evaluated polls of a cluster"),
    "replbot_commands_total": ("counter", "Chat commands and button presses by outcome"),
}


class Metrics:
    """Gauges and counters with labels; :meth:`exposition` renders them for Prometheus."""

    def __init__(self) -> None:
        self._values: dict[str, dict[Labels, float]] = {name: {} for name in FAMILIES}
        self._collectors: list[Callable[[], None]] = []

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        self._values[name][_labels(labels)] = float(value)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = _labels(labels)
        family = self._values[name]
        family[key] = family.get(key, 0.0) + amount

    def clear(self, name: str, **match: str) -> None:
        """Drop the series of ``name`` whose labels include ``match`` (e.g. a gone slot)."""
        wanted = set(match.items())
        family = self._values[name]
        for key in [k for k in family if wanted <= set(k)]:
            del family[key]

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of one series (for tests and the console)."""
        return self._values[name].get(_labels(labels))

    def add_collector(self, collect: Callable[[], None]) -> None:
        """Run ``collect`` before every scrape (to refresh derived gauges)."""
        self._collectors.append(collect)

    def exposition(self) -> str:
        """The text format, version 0.0.4."""
        for collect in self._collectors:
            collect()
        lines: list[str] = []
        for name, (kind, help_text) in FAMILIES.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(self._values[name].items()):
                lines.append(f"{name}{_format_labels(labels)} {_format_value(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


class CountingAuditLog:
    """An AuditLog that counts every audited request before writing it.

    The dispatcher audits every command and button press exactly once, so this is where the
    command counts come from. Names not in ``known`` are counted as ``other``.
    """

    def __init__(self, inner: AuditLog, metrics: Metrics, known: Iterable[str]) -> None:
        self._inner = inner
        self._metrics = metrics
        self._known = frozenset(known)

    async def append(self, record: AuditRecord) -> None:
        """Count, then write (an intent row is not a request of its own: not counted)."""
        if record.outcome is not Outcome.INTENT:
            head = record.command.split(".", 1)[0]
            name = record.command if head in self._known else "other"
            self._metrics.inc("replbot_commands_total", command=name, outcome=record.outcome.value)
        await self._inner.append(record)

    async def recent(self, limit: int) -> list[AuditEntry]:
        """As the wrapped log."""
        return await self._inner.recent(limit)

    async def verify(self) -> AuditVerification:
        """As the wrapped log."""
        return await self._inner.verify()
