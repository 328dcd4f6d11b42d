"""/alerts, /mute, /unmute; the Acknowledge and Mute buttons of alert messages; and the
AlertFormatter that turns alert notices into messages with those buttons.

Button data is ``al:ack:<id>`` / ``al:mute:<id>`` / ``al:repair:<id>`` (alerts about a
replica); the dispatcher routes it to :func:`press` after checking :data:`BUTTON_ROLE`, and
audits the press like any command. Repair needs an admin (checked by handlers/repair.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bot.errors import InvalidInput
from bot.models import (
    Alert,
    AlertNotice,
    AlertRule,
    ChartRef,
    MessageButton,
    NoticeKind,
    OutgoingMessage,
    Role,
)
from bot.phrases import Phrase
from bot.services.monitor.alerts import AlertService
from bot.units import parse_duration
from handlers import i18n, parsing, render
from handlers.base import CommandContext, HandlerGroup, Purpose, Reply
from handlers.repair import press_repair

group = HandlerGroup()
BUTTON_PREFIX = "al"
BUTTON_ROLE = Role.OPERATOR
BUTTON_CHANGES_STATE = True  # acknowledge and mute change alert state: an intent row first
MAX_ALERTS_PER_MESSAGE = 20  # each brings a row of buttons
_HEADER_ROOM = 120
_WITH_BUTTONS = {NoticeKind.FIRING, NoticeKind.REPEAT, NoticeKind.ESCALATED}
_CHART_RULES = {AlertRule.BYTE_LAG, AlertRule.TIME_LAG, AlertRule.SLOT_RETAINED}
_REPLICA_CHART_RULES = {AlertRule.BYTE_LAG, AlertRule.TIME_LAG}


class AlertRenderer:
    """The AlertFormatter port: groups notices into as few messages as Telegram allows."""

    def __init__(
        self,
        mute_button_s: float,
        limit: int = render.TELEGRAM_LIMIT,
        repair_target: Callable[[Alert], str | None] | None = None,
        charts: bool = False,
        languages: Mapping[str, str] | None = None,
        default_language: str = i18n.DEFAULT_LANGUAGE,
    ) -> None:
        """``repair_target`` names the replica an alert may be repaired on (a Repair button);
        ``charts``: a message firing a lag or slot-growth alert asks for a chart under it;
        ``languages`` maps a cluster to its alerts' language (else ``default_language``)."""
        self._charts = charts
        self._languages = dict(languages or {})
        self._default_language = default_language
        self._mute_s = mute_button_s
        self._limit = limit
        self._repair_target = repair_target

    def messages(self, notices: Sequence[AlertNotice]) -> list[OutgoingMessage]:
        """One message for all ``notices`` unless it would pass 4096 characters or 20 alerts,
        in the clusters' language (``default_language`` when the clusters disagree)."""
        languages = {
            self._languages.get(n.alert.cluster) or self._default_language for n in notices
        }
        language = languages.pop() if len(languages) == 1 else self._default_language
        with i18n.language(language):
            return self._messages(notices)

    def _messages(self, notices: Sequence[AlertNotice]) -> list[OutgoingMessage]:
        chunks: list[list[tuple[AlertNotice, str]]] = [[]]
        size = _HEADER_ROOM
        for notice in notices:
            block = render.alert_notice(notice)
            current = chunks[-1]
            if current and (
                size + len(block) + 2 > self._limit or len(current) >= MAX_ALERTS_PER_MESSAGE
            ):
                chunks.append([])
                size = _HEADER_ROOM
            chunks[-1].append((notice, block))
            size += len(block) + 2
        return [m for chunk in chunks if chunk for m in self._message(chunk)]

    def _message(self, chunk: list[tuple[AlertNotice, str]]) -> list[OutgoingMessage]:
        blocks = [block for _, block in chunk]
        if len(chunk) > 1:
            blocks.insert(0, render.alert_header([notice for notice, _ in chunk]))
        rows = tuple(
            row
            for notice, _ in chunk
            if notice.kind in _WITH_BUTTONS
            for row in self._button_rows(notice)
        )
        parts = render.split_message("\n\n".join(blocks), self._limit)
        chart = self._chart([notice for notice, _ in chunk])
        return [
            OutgoingMessage(part, rows, chart) if index == len(parts) - 1 else OutgoingMessage(part)
            for index, part in enumerate(parts)
        ]

    def _chart(self, notices: Sequence[AlertNotice]) -> ChartRef | None:
        """The chart of the first lag or slot alert that fires (or escalates) here."""
        if not self._charts:
            return None
        for notice in notices:
            alert = notice.alert
            if notice.kind in _WITH_BUTTONS and alert.rule in _CHART_RULES:
                node = alert.node if alert.rule in _REPLICA_CHART_RULES else None
                return ChartRef(alert.cluster, node)
        return None

    def _button_rows(self, notice: AlertNotice) -> list[tuple[MessageButton, ...]]:
        """Ack and Mute; under them Repair, for an alert about a repairable replica."""
        alert = notice.alert
        ack, mute = render.alert_button_labels(alert, self._mute_s)
        rows: list[tuple[MessageButton, ...]] = [
            (
                MessageButton(ack, f"{BUTTON_PREFIX}:ack:{alert.id}"),
                MessageButton(mute, f"{BUTTON_PREFIX}:mute:{alert.id}"),
            )
        ]
        if self._repair_target is not None and self._repair_target(alert) is not None:
            label = render.alert_repair_label(alert)
            rows.append((MessageButton(label, f"{BUTTON_PREFIX}:repair:{alert.id}"),))
        return rows


class DeliveryRenderer:
    """The DeliveryFormatter port: the delivery service's notices, worded in render.py."""

    def __init__(
        self, limit: int = render.TELEGRAM_LIMIT, language: str = i18n.DEFAULT_LANGUAGE
    ) -> None:
        self._limit = limit
        self._language = language  # telegram.language: these notices concern chats, not clusters

    def chat_refusing(self, chat_id: int, reason: str, fallback: int | None) -> OutgoingMessage:
        """The notice that ``chat_id`` refuses the bot."""
        with i18n.language(self._language):
            return OutgoingMessage(render.alert_chat_refusing(chat_id, reason, fallback))

    def redirected(self, chat_id: int, message: OutgoingMessage) -> list[OutgoingMessage]:
        """``message`` behind a line naming the chat that refused it (split if too long)."""
        with i18n.language(self._language):
            head = render.alert_redirected(chat_id)
        parts = render.split_message(f"{head}\n{message.html}", self._limit)
        return [
            OutgoingMessage(part, message.buttons if index == len(parts) - 1 else ())
            for index, part in enumerate(parts)
        ]


def _service(ctx: CommandContext) -> AlertService:
    service = ctx.services.alerts
    if service is None:
        raise InvalidInput(Phrase.of("error.alert.unavailable"))
    return service


@group.command(
    "alerts",
    Role.VIEWER,
    "alerts firing now, and the mutes in force",
    "/alerts",
    purpose=Purpose.ALERTS,
    example="/alerts",
)
async def alerts(ctx: CommandContext) -> None:
    """List the firing alerts (acknowledged and muted ones marked) and the active mutes."""
    parsing.no_arguments(ctx.args)
    service = _service(ctx)
    now = ctx.services.clock.time()
    await ctx.chat.send(Reply(render.alerts_firing(service.firing(), service.active_mutes(), now)))


MUTE_USAGE = "/mute CLUSTER|NODE|CLUSTER/NODE DURATION"


@group.command(
    "mute",
    Role.OPERATOR,
    "silence the alerts of a cluster or node for a while",
    MUTE_USAGE,
    changes_state=True,
    purpose=Purpose.ALERTS,
    example="/mute pg2 2h",
)
async def mute(ctx: CommandContext) -> None:
    """Mute a cluster or a node: its alerts are recorded but not announced."""
    if len(ctx.args) != 2:
        raise InvalidInput(Phrase.of("error.usage", usage=MUTE_USAGE))
    target, duration_text = ctx.args
    try:
        duration = parse_duration(duration_text)
    except ValueError:
        raise InvalidInput(
            Phrase.of("error.input.bad_duration", value=duration_text, usage=MUTE_USAGE)
        ) from None
    service = _service(ctx)
    cluster, node = service.resolve_target(target)
    await service.mute(cluster, node, duration, ctx.user.name)
    ctx.audit_note = f"muted {cluster}/{node or '*'} for {duration:.0f} s"
    await ctx.chat.send(Reply(render.target_muted(cluster, node, duration)))


@group.command(
    "unmute",
    Role.OPERATOR,
    "end the mutes of a cluster or node",
    "/unmute CLUSTER|NODE",
    changes_state=True,
    purpose=Purpose.ALERTS,
    example="/unmute pg2",
)
async def unmute(ctx: CommandContext) -> None:
    """End the mutes of a cluster (with its nodes and alerts) or of a node."""
    if len(ctx.args) != 1:
        raise InvalidInput(Phrase.of("error.usage", usage="/unmute CLUSTER|NODE|CLUSTER/NODE"))
    service = _service(ctx)
    cluster, node = service.resolve_target(ctx.args[0])
    ended = await service.unmute(cluster, node)
    ctx.audit_note = f"{ended} mute(s) ended"
    await ctx.chat.send(Reply(render.target_unmuted(cluster, node, ended)))


def button_name(data: str) -> str:
    """The audit name of a pressed alert button: 'ack:12' -> 'alert.ack'."""
    action = data.partition(":")[0]
    return f"alert.{action}" if action in {"ack", "mute", "repair"} else "alert.button"


async def press(ctx: CommandContext, data: str) -> None:
    """Acknowledge or mute the alert named in ``data`` ('ack:12' / 'mute:12')."""
    action, _, ident = data.partition(":")
    if action not in {"ack", "mute", "repair"} or not ident.isascii() or not ident.isdigit():
        raise InvalidInput(Phrase.of("error.button.invalid"))
    service = _service(ctx)
    alert_id = int(ident)
    if action == "repair":
        await press_repair(ctx, await service.get(alert_id))
        return
    if action == "ack":
        alert = await service.acknowledge(alert_id, ctx.user.name)
        text = render.alert_acknowledged(alert)
        await ctx.chat.notify(render.toast_alert_acknowledged(alert_id))
    else:
        duration = ctx.services.config.monitor.mute_button_s
        alert = await service.mute_alert(alert_id, ctx.user.name, duration)
        text = render.alert_muted(alert, ctx.services.clock.time())
        await ctx.chat.notify(render.toast_alert_muted(alert_id))
    ctx.audit_args = f"#{alert.id} {alert.key}"
    await ctx.chat.send(Reply(text))
