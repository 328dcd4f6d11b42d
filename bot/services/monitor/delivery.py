"""Delivery of the outbox: one worker per chat, in order, until every message is sent.

A worker takes the oldest unsent message of its chat, sends it through the Notifier and
marks it sent right after the Bot API confirmed it, so a restart never sends a confirmed
message again. Telegram's flood control (429) is waited out for exactly ``retry_after``;
5xx answers, network errors and timeouts are retried with exponential back-off (capped) —
the message stays at the head of its chat's queue, so the order within a chat is kept. A
message Telegram refuses for good (a bad request) is marked failed and logged; it does not
block the messages behind it.

Three answers concern the chat or the bot rather than one message:

* **The group became a supergroup** (400 with ``migrate_to_chat_id``): the chat's unsent
  messages, the refused one first, move to the new id and are sent there at once; the move is
  stored, so later alerts for the configured (old) id go to the new chat, after a restart too.
* **The chat refuses the bot** (403 kicked / blocked, 400 chat not found, 404): the message is
  marked failed; the first time, the chat is recorded as refusing, logged, and the other alert
  chats (and the fallback chat) get one notice — not one per message. With
  ``telegram.alert_fallback_chat_id`` the refused message is queued again for that chat, behind
  a line naming the refusing chat. A later message the chat accepts clears the state.
* **The token is refused** (401): no chat can be reached and no fallback can help. The message
  stays queued (nothing is lost: a new token and a restart deliver it), the outage is logged
  loudly once, counted, and every worker waits a shared, doubling back-off (capped) before the
  next try — the bot does not spin against the Bot API.

Waiting goes through the injected ``sleep`` and time through the Clock, so tests drive it.

One ambiguity cannot be removed: a request that timed out may still have been accepted by
Telegram. It is retried (an alert may then arrive twice) rather than risk losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from bot.errors import (
    ChatMoved,
    ChatRefused,
    DeliveryRejected,
    DeliveryUnavailable,
    RetryLater,
    TokenRejected,
)
from bot.models import ChartRef, OutboxItem, OutgoingMessage
from bot.ports import Clock, DeliveryFormatter, Notifier, Outbox

log = logging.getLogger(__name__)
RETRY_AFTER_MARGIN_S = 0.1


class DeliveryService:
    """Sends the outbox, chat by chat, honouring flood control and backing off on failures."""

    def __init__(
        self,
        outbox: Outbox,
        notifier: Notifier,
        clock: Clock,
        *,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
        on_wait: Callable[[int, float, str], None] | None = None,
        formatter: DeliveryFormatter | None = None,
        alert_chats: Sequence[int] = (),
        fallback_chat: int | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        attach_chart: Callable[[int, int | None, ChartRef, int], Awaitable[None]] | None = None,
    ) -> None:
        """``attach_chart(chat, thread, chart, message_id)`` sends the chart a message asks
        for (``OutgoingMessage.chart``) after the message itself was delivered."""
        self._attach_chart = attach_chart
        self._outbox = outbox
        self._notifier = notifier
        self._clock = clock
        self._initial = retry_initial_s
        self._max = retry_max_s
        self._on_wait = on_wait
        self._formatter = formatter
        self._alert_chats = tuple(alert_chats)
        self._fallback = fallback_chat
        self._sleep = sleep or asyncio.sleep
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._wakeups: dict[int, asyncio.Event] = {}
        self._stopping = asyncio.Event()
        self._moves: dict[int, int] = {}
        self._token_blocked_until = 0.0  # Clock.monotonic() before which nobody sends (401)
        self._token_backoff = retry_initial_s
        self.sent = 0
        self.failures = 0
        self.refusing: dict[int, str] = {}  # chat -> Telegram's reason
        self.refusals: dict[int, int] = {}  # chat -> messages it refused (this process)
        self.migrations = 0
        self.token_rejected = False
        self.token_rejections = 0
        self.chart_failures = 0

    async def start(self) -> None:
        """Start workers for the chats that still have unsent messages (e.g. after a restart)."""
        self._stopping.clear()
        self._moves = await self._outbox.chat_moves()
        self.refusing = await self._outbox.refusing_chats()
        self.wake(await self._outbox.pending_chats())

    def resolve(self, chat: int) -> int:
        """The id ``chat`` has now (a group that became a supergroup has a new one)."""
        for _ in range(8):  # a chain of moves is stored resolved; this only guards a cycle
            moved = self._moves.get(chat)
            if moved is None:
                break
            chat = moved
        return chat

    def watched_chats(self) -> list[int]:
        """The alert chats, the fallback chat and the refusing chats, by their current ids."""
        chats = [*self._alert_chats, *([self._fallback] if self._fallback is not None else [])]
        return sorted({*(self.resolve(c) for c in chats), *self.refusing})

    def wake(self, chats: Sequence[int]) -> None:
        """New messages for ``chats``: make sure their workers run and look."""
        if self._stopping.is_set():
            return
        for chat in dict.fromkeys(self.resolve(c) for c in chats):
            self._wakeups.setdefault(chat, asyncio.Event()).set()
            task = self._workers.get(chat)
            if task is None or task.done():
                self._workers[chat] = asyncio.create_task(
                    self._worker(chat), name=f"alert-delivery-{chat}"
                )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let in-flight sends finish (up to ``grace_s``), then stop every worker."""
        self._stopping.set()
        for event in self._wakeups.values():
            event.set()
        tasks = [t for t in self._workers.values() if not t.done()]
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=grace_s)
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._workers.clear()
        await self._notifier.close()

    async def idle(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout`` passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self._outbox.pending_count():
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _worker(self, chat: int) -> None:
        """Deliver the chat's queue head first, forever; a storage error only pauses it."""
        wakeup = self._wakeups.setdefault(chat, asyncio.Event())
        backoff = self._initial
        while not self._stopping.is_set() and chat not in self._moves:
            try:
                backoff = await self._deliver_next(chat, wakeup, backoff)
            except Exception:  # the outbox itself failed (disk full, locked): try again later
                log.exception("alert delivery to chat %d failed; retrying", chat)
                await self._pause(chat, self._max, "error")

    async def _deliver_next(self, chat: int, wakeup: asyncio.Event, backoff: float) -> float:
        """Send the oldest unsent message of ``chat`` (or wait for one); the next back-off."""
        wakeup.clear()
        item = await self._outbox.next_pending(chat)
        if item is None:
            await wakeup.wait()
            return backoff
        blocked = self._token_blocked_until - self._clock.monotonic()
        if blocked > 0:
            await self._pause(chat, blocked, "unauthorized")
            return backoff
        try:
            message_id = await self._notifier.send(chat, item.thread_id, item.message)
        except RetryLater as exc:
            await self._failed(item.id, exc.user_message, final=False)
            await self._pause(chat, exc.retry_after_s + RETRY_AFTER_MARGIN_S, "retry_after")
            return backoff
        except ChatMoved as exc:
            await self._moved(chat, item, exc.new_chat_id)
            return self._initial
        except ChatRefused as exc:
            await self._refused(chat, item, exc.reason)
            return backoff
        except TokenRejected as exc:
            await self._token_refused(item, exc.user_message)
            return backoff
        except DeliveryRejected as exc:
            log.error("alert message %d to chat %d refused: %s", item.id, chat, exc)
            await self._failed(item.id, exc.user_message, final=True)
            return backoff
        except Exception as exc:  # DeliveryUnavailable, or a surprise: retried all the same
            if isinstance(exc, DeliveryUnavailable):
                reason = exc.user_message
            else:
                reason = type(exc).__name__
                log.exception("unexpected error sending alert message %d", item.id)
            await self._failed(item.id, reason, final=False)
            delay = min(backoff * random.uniform(0.8, 1.2), self._max)  # jitter
            await self._pause(chat, delay, "backoff")
            return min(backoff * 2, self._max)
        await self._outbox.mark_sent(item.id, message_id, self._clock.time())
        self.sent += 1
        if item.message.chart is not None and self._attach_chart is not None:
            await self._chart(chat, item, item.message.chart, message_id)
        if self.token_rejected:
            self.token_rejected = False
            self._token_backoff = self._initial
            log.warning("Telegram accepts the bot's token again; alert delivery resumes")
        if chat in self.refusing:
            await self._outbox.clear_refusal(chat)
            del self.refusing[chat]
            log.warning("alert chat %d accepts the bot's messages again", chat)
        return self._initial

    async def _chart(self, chat: int, item: OutboxItem, chart: ChartRef, message_id: int) -> None:
        """Attach the message's chart; the text alert is out already, so a chart that cannot
        be drawn or sent is logged and given up, never retried in front of later alerts."""
        assert self._attach_chart is not None
        try:
            await self._attach_chart(chat, item.thread_id, chart, message_id)
        except Exception:
            self.chart_failures += 1
            log.warning(
                "the chart of alert message %d to chat %d was not sent",
                item.id,
                chat,
                exc_info=True,
            )

    async def _moved(self, chat: int, item: OutboxItem, new_chat: int) -> None:
        """Follow a group's upgrade to a supergroup: its queue moves to the new id, for good."""
        if self.resolve(new_chat) == chat:  # would loop: give this message up instead
            log.error("chat %d says it moved to %d, which leads back to it", chat, new_chat)
            await self._failed(item.id, f"chat moved to {new_chat} and back", final=True)
            return
        moved = await self._outbox.move_chat(chat, new_chat, self._clock.time())
        for old, new in list(self._moves.items()):
            if new == chat:
                self._moves[old] = new_chat
        self._moves[chat] = new_chat
        self.migrations += 1
        log.warning(
            "alert chat %d became supergroup %d: %d queued message(s) moved there and later "
            "alerts for %d go there too; replace the id in alert_chat_ids",
            chat,
            new_chat,
            moved,
            chat,
        )
        self.wake([new_chat])

    async def _refused(self, chat: int, item: OutboxItem, reason: str) -> None:
        """The chat refuses the bot: give the message up, re-queue it for the fallback chat,
        and tell the other alert chats once."""
        self.failures += 1
        self.refusals[chat] = self.refusals.get(chat, 0) + 1
        fallback = None if self._fallback is None else self.resolve(self._fallback)
        if fallback == chat:
            fallback = None  # the fallback itself refuses: nowhere else to go
        requeue: list[tuple[int, int | None, OutgoingMessage]] = []
        notices: list[tuple[int, int | None, OutgoingMessage]] = []
        if fallback is not None:
            copies = (
                self._formatter.redirected(chat, item.message)
                if self._formatter is not None
                else [item.message]
            )
            requeue = [(fallback, None, message) for message in copies]
        if chat not in self.refusing and self._formatter is not None:
            notice = self._formatter.chat_refusing(chat, reason, fallback)
            others = [self.resolve(c) for c in self._alert_chats]
            if fallback is not None:
                others.append(fallback)
            notices = [
                (other, None, notice)
                for other in dict.fromkeys(others)
                if other != chat and other not in self.refusing
            ]
        newly = await self._outbox.refuse(
            item.id, f"chat refuses the bot: {reason}", chat, self._clock.time(), requeue, notices
        )
        self.refusing[chat] = reason
        where = f"re-queued for chat {fallback}" if fallback is not None else "given up"
        if newly:
            log.error(
                "alert chat %d refuses the bot (%s): message %d %s; %d other chat(s) told",
                chat,
                reason,
                item.id,
                where,
                len(notices),
            )
        else:
            log.warning("alert chat %d still refuses the bot: message %d %s", chat, item.id, where)
        self.wake([target for target, _, _ in [*requeue, *(notices if newly else [])]])

    async def _token_refused(self, item: OutboxItem, reason: str) -> None:
        """401: the message stays queued; every worker waits one shared, doubling back-off."""
        self.failures += 1
        self.token_rejections += 1
        await self._outbox.record_failure(item.id, reason, final=False)
        now = self._clock.monotonic()
        if now < self._token_blocked_until:
            return  # another chat's worker already started this back-off
        delay = self._token_backoff
        self._token_blocked_until = now + delay
        self._token_backoff = min(delay * 2, self._max)
        if not self.token_rejected:
            log.critical(
                "Telegram refuses the bot's token (401 Unauthorized): NO alert can be delivered "
                "to any chat until telegram.token (or REPLBOT_TELEGRAM_TOKEN) is replaced and "
                "the bot restarted; messages stay queued; next try in %.0f s",
                delay,
            )
        else:
            log.error("Telegram still refuses the bot's token; next try in %.0f s", delay)
        self.token_rejected = True

    async def _failed(self, item_id: int, reason: str, final: bool) -> None:
        self.failures += 1
        outcome = "given up" if final else "will retry"
        log.warning("alert message %d not delivered (%s); %s", item_id, reason, outcome)
        await self._outbox.record_failure(item_id, reason, final)

    async def _pause(self, chat: int, seconds: float, why: str) -> None:
        """Sleep ``seconds`` (ended early by stop())."""
        if self._on_wait is not None:
            self._on_wait(chat, seconds, why)
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
