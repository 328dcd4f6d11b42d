"""Outbox delivery with a scripted notifier: order, flood control, back-off, no resends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.errors import DeliveryRejected, DeliveryUnavailable, RetryLater
from bot.models import OutgoingMessage
from bot.services.monitor.delivery import DeliveryService
from tests.unit.fakes import FakeClock

CHAT = -100


class ScriptedNotifier:
    """Fails the first calls as scripted, then delivers; records what was delivered."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.delivered: list[str] = []
        self.attempts = 0

    async def send(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(message.html)
        return len(self.delivered)

    async def close(self) -> None:
        pass


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteAlertStore]:
    opened = SqliteAlertStore(tmp_path / "outbox.sqlite3")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def enqueue(store: SqliteAlertStore, *texts: str, chat: int = CHAT) -> None:
    async with store.transaction() as tx:
        for text in texts:
            await tx.enqueue(chat, None, OutgoingMessage(text))


def service(
    store: SqliteAlertStore, notifier: ScriptedNotifier, waits: list[tuple[float, str]]
) -> DeliveryService:
    return DeliveryService(
        store,
        notifier,
        FakeClock(),
        retry_initial_s=0.01,
        retry_max_s=0.04,
        on_wait=lambda chat, seconds, why: waits.append((seconds, why)),
    )


async def test_flood_control_and_outages_end_with_each_message_once_in_order(
    store: SqliteAlertStore,
) -> None:
    notifier = ScriptedNotifier(
        RetryLater(0.05),
        DeliveryUnavailable("500"),
        DeliveryUnavailable("502"),
        DeliveryUnavailable("timeout"),
        DeliveryUnavailable("timeout"),
    )
    waits: list[tuple[float, str]] = []
    delivery = service(store, notifier, waits)
    await enqueue(store, "one", "two", "three")
    await delivery.start()
    assert await delivery.idle(timeout=10)
    await delivery.stop()
    assert notifier.delivered == ["one", "two", "three"]
    assert waits[0] == (pytest.approx(0.15), "retry_after")  # retry_after + a small margin
    backoffs = [seconds for seconds, why in waits if why == "backoff"]
    assert len(backoffs) == 4 and max(backoffs) <= 0.04  # doubled, capped
    assert [row[4] for row in await store.outbox_rows()] == [6, 1, 1]  # attempts per message


async def test_a_refused_message_is_given_up_and_does_not_block_the_next(
    store: SqliteAlertStore,
) -> None:
    notifier = ScriptedNotifier(DeliveryRejected("chat not found"))
    delivery = service(store, notifier, [])
    await enqueue(store, "refused", "next")
    await delivery.start()
    assert await delivery.idle(timeout=10)
    await delivery.stop()
    assert notifier.delivered == ["next"]
    assert [row[2] for row in await store.outbox_rows()] == ["failed", "sent"]


async def test_after_a_restart_only_unsent_messages_are_sent(store: SqliteAlertStore) -> None:
    first = ScriptedNotifier()
    delivery = service(store, first, [])
    await enqueue(store, "before")
    await delivery.start()
    assert await delivery.idle(timeout=10)
    await delivery.stop()
    failing = ScriptedNotifier(*[DeliveryUnavailable("down")] * 1000)
    delivery = service(store, failing, [])
    await delivery.start()
    await enqueue(store, "during outage")
    delivery.wake([CHAT])
    while failing.attempts < 3:
        await asyncio.sleep(0.01)
    await delivery.stop()
    recovered = ScriptedNotifier()
    delivery = service(store, recovered, [])
    await delivery.start()
    assert await delivery.idle(timeout=10)
    await delivery.stop()
    assert first.delivered == ["before"]
    assert recovered.delivered == ["during outage"]


async def test_each_chat_has_its_own_queue(store: SqliteAlertStore) -> None:
    notifier = ScriptedNotifier()
    delivery = service(store, notifier, [])
    await delivery.start()
    await enqueue(store, "a1", "a2", chat=-1)
    await enqueue(store, "b1", chat=-2)
    delivery.wake([-1, -2])
    assert await delivery.idle(timeout=10)
    await delivery.stop()
    assert sorted(notifier.delivered) == ["a1", "a2", "b1"]
    assert notifier.delivered.index("a1") < notifier.delivered.index("a2")
