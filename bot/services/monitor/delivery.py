"""Delivery of the outbox: one worker per chat, in order, until every message is sent.

A worker takes the oldest unsent message of its chat, sends it through the Notifier and
marks it sent right after the Bot API confirmed it, so a restart never sends a confirmed
message again. Telegram's flood control (429) is waited out for exactly ``retry_after``;
5xx answers, network errors and timeouts are retried with exponential back-off (capped) —
the message stays at the head of its chat's queue, so the order within a chat is kept. A
message Telegram refuses for good (bad request, bot removed from the chat) is marked failed
and logged; it does not block the messages behind it.

One ambiguity cannot be removed: a request that timed out may still have been accepted by
Telegram. It is retried (an alert may then arrive twice) rather than risk losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence

from bot.errors import DeliveryRejected, DeliveryUnavailable, RetryLater
from bot.ports import Clock, Notifier, Outbox

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
    ) -> None:
        self._outbox = outbox
        self._notifier = notifier
        self._clock = clock
        self._initial = retry_initial_s
        self._max = retry_max_s
        self._on_wait = on_wait
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._wakeups: dict[int, asyncio.Event] = {}
        self._stopping = asyncio.Event()
        self.sent = 0
        self.failures = 0

    async def start(self) -> None:
        """Start workers for the chats that still have unsent messages (e.g. after a restart)."""
        self._stopping.clear()
        self.wake(await self._outbox.pending_chats())

    def wake(self, chats: Sequence[int]) -> None:
        """New messages for ``chats``: make sure their workers run and look."""
        if self._stopping.is_set():
            return
        for chat in chats:
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
        while not self._stopping.is_set():
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
        try:
            message_id = await self._notifier.send(chat, item.thread_id, item.message)
        except RetryLater as exc:
            await self._failed(item.id, exc.user_message, final=False)
            await self._pause(chat, exc.retry_after_s + RETRY_AFTER_MARGIN_S, "retry_after")
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
        return self._initial

    async def _failed(self, item_id: int, reason: str, final: bool) -> None:
        self.failures += 1
        outcome = "given up" if final else "will retry"
        log.warning("alert message %d not delivered (%s); %s", item_id, reason, outcome)
        await self._outbox.record_failure(item_id, reason, final)

    async def _pause(self, chat: int, seconds: float, why: str) -> None:
        """Sleep ``seconds`` (ended early by stop())."""
        if self._on_wait is not None:
            self._on_wait(chat, seconds, why)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
