"""Outbox delivery with a scripted notifier: order, flood control, back-off, no resends."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.app import delivery_gauges
from bot.errors import (
    ChatMoved,
    ChatRefused,
    DeliveryRejected,
    DeliveryUnavailable,
    RetryLater,
    TokenRejected,
)
from bot.models import OutgoingMessage
from bot.phrases import Phrase
from bot.services.monitor.delivery import DeliveryService
from bot.services.monitor.metrics import Metrics
from handlers.alerts import DeliveryRenderer
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
        DeliveryUnavailable(Phrase.of("error.delivery.unavailable", reason="500")),
        DeliveryUnavailable(Phrase.of("error.delivery.unavailable", reason="502")),
        DeliveryUnavailable(Phrase.of("error.delivery.timeout")),
        DeliveryUnavailable(Phrase.of("error.delivery.timeout")),
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
    notifier = ScriptedNotifier(
        DeliveryRejected(Phrase.of("error.delivery.rejected", reason="chat not found"))
    )
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
    failing = ScriptedNotifier(
        *[DeliveryUnavailable(Phrase.of("error.delivery.unavailable", reason="down"))] * 1000
    )
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


# --- chats that move, chats that refuse the bot, a revoked token ------------------------------

OLD, NEW = -4001, -1004001  # a group and the supergroup it became
KICKED, OTHER, FALLBACK = -5001, -5002, -5003


class ChatNotifier:
    """Answers per chat: a chat listed in ``refusals`` raises its error on every send."""

    def __init__(self, clock: FakeClock | None = None, **_: object) -> None:
        self.refusals: dict[int, Exception] = {}
        self.token_refusals = 0  # the next N sends (any chat) answer 401
        self.delivered: list[tuple[int, str]] = []
        self.attempts: list[tuple[int, float]] = []  # (chat, clock time)
        self.watch: Callable[[], object] | None = None  # sampled at every attempt
        self.watched: list[object] = []
        self._clock = clock

    async def send(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        self.attempts.append((chat_id, self._clock.monotonic() if self._clock else 0.0))
        if self.watch is not None:
            self.watched.append(self.watch())
        if self.token_refusals:
            self.token_refusals -= 1
            raise TokenRejected(Phrase.of("error.delivery.token", reason="Unauthorized"))
        refusal = self.refusals.get(chat_id)
        if refusal is not None:
            raise refusal
        self.delivered.append((chat_id, message.html))
        return len(self.delivered)

    async def close(self) -> None:
        pass


def chat_delivery(
    store: SqliteAlertStore,
    notifier: ChatNotifier,
    clock: FakeClock | None = None,
    waits: list[tuple[int, float, str]] | None = None,
    fallback: int | None = None,
    initial: float = 0.01,
    cap: float = 0.04,
) -> DeliveryService:
    clock = clock or FakeClock()
    return DeliveryService(
        store,
        notifier,
        clock,
        retry_initial_s=initial,
        retry_max_s=cap,
        on_wait=None if waits is None else (lambda *w: waits.append(w)),
        formatter=DeliveryRenderer(),
        alert_chats=(OLD, KICKED, OTHER),
        fallback_chat=fallback,
        sleep=clock.sleep,
    )


async def drain(delivery: DeliveryService) -> None:
    await delivery.start()
    assert await delivery.idle(timeout=10)
    await delivery.stop()


async def test_a_group_that_became_a_supergroup_is_followed_and_stays_followed_after_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    store = SqliteAlertStore(path)
    await store.open()
    notifier = ChatNotifier()
    notifier.refusals[OLD] = ChatMoved(OLD, NEW)
    await enqueue(store, "first", "second", chat=OLD)
    delivery = chat_delivery(store, notifier)
    await drain(delivery)
    assert notifier.delivered == [(NEW, "first"), (NEW, "second")]  # re-sent at once, in order
    assert [(chat, state) for _, chat, state, _, _ in await store.outbox_rows()] == [
        (NEW, "sent"),
        (NEW, "sent"),
    ]
    assert delivery.migrations == 1
    assert delivery.resolve(OLD) == NEW
    assert NEW in delivery.watched_chats() and OLD not in delivery.watched_chats()
    await store.close()

    reopened = SqliteAlertStore(path)  # a restart: the config still names the old id
    await reopened.open()
    try:
        after = ChatNotifier()
        after.refusals[OLD] = ChatMoved(OLD, NEW)
        await enqueue(reopened, "after restart", chat=OLD)
        delivery = chat_delivery(reopened, after)
        await delivery.start()
        delivery.wake([OLD])  # what AlertService reports: the configured id
        assert await delivery.idle(timeout=10)
        await delivery.stop()
        assert after.attempts == [(NEW, 0.0)]  # straight to the supergroup, never the old id
        assert after.delivered == [(NEW, "after restart")]
    finally:
        await reopened.close()


async def test_a_chat_that_refuses_the_bot_is_reported_once_and_its_alerts_go_to_the_fallback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    store = SqliteAlertStore(path)
    await store.open()
    notifier = ChatNotifier()
    notifier.refusals[KICKED] = ChatRefused(KICKED, "Forbidden: bot was kicked from the group chat")
    await enqueue(store, "alert one", "alert two", chat=KICKED)
    await enqueue(store, "for other", chat=OTHER)
    delivery = chat_delivery(store, notifier, fallback=FALLBACK)
    await drain(delivery)

    by_chat: dict[int, list[str]] = {}
    for chat, text in notifier.delivered:
        by_chat.setdefault(chat, []).append(text)
    notice = [t for t in by_chat[OTHER] if "refuses the bot" in t]
    assert len(notice) == 1  # one notice per refusing chat, not one per message
    assert str(KICKED) in notice[0] and "bot was kicked" in notice[0]
    assert str(FALLBACK) in notice[0]  # says where its alerts go instead
    assert "for other" in by_chat[OTHER]
    redirected = [t for t in by_chat[FALLBACK] if "meant for alert chat" in t]
    assert [t.rsplit("\n", 1)[-1] for t in redirected] == ["alert one", "alert two"]
    assert all(str(KICKED) in t for t in redirected)
    assert sum("refuses the bot" in t and "meant for" not in t for t in by_chat[FALLBACK]) == 1
    rows = await store.outbox_rows()
    states = {html: state for _, chat, state, html, _ in rows if chat == KICKED}
    assert states == {"alert one": "failed", "alert two": "failed"}  # kept, never deleted
    assert delivery.refusing == {KICKED: "Forbidden: bot was kicked from the group chat"}
    metrics = Metrics()
    delivery_gauges(metrics, delivery)
    assert metrics.value("replbot_alert_chat_refusing", chat=str(KICKED)) == 1
    assert metrics.value("replbot_alert_chat_refusing", chat=str(OTHER)) == 0
    assert metrics.value("replbot_alert_chat_refusals_total", chat=str(KICKED)) == 2
    await store.close()

    reopened = SqliteAlertStore(path)  # after a restart the chat is still known to refuse
    await reopened.open()
    try:
        again = ChatNotifier()
        again.refusals[KICKED] = notifier.refusals[KICKED]
        await enqueue(reopened, "alert three", chat=KICKED)
        await drain(chat_delivery(reopened, again, fallback=FALLBACK))
        assert not any("refuses the bot" in t and "meant" not in t for _, t in again.delivered)
        assert [c for c, t in again.delivered if t.endswith("alert three")] == [FALLBACK]

        welcomed = ChatNotifier()  # the bot was added back
        await enqueue(reopened, "alert four", chat=KICKED)
        delivery = chat_delivery(reopened, welcomed, fallback=FALLBACK)
        await drain(delivery)
        assert welcomed.delivered == [(KICKED, "alert four")]
        assert delivery.refusing == {}
        assert await reopened.refusing_chats() == {}
    finally:
        await reopened.close()


async def test_a_refusing_chat_without_fallback_is_given_up_and_reported(
    store: SqliteAlertStore,
) -> None:
    notifier = ChatNotifier()
    notifier.refusals[KICKED] = ChatRefused(KICKED, "Bad Request: chat not found")
    await enqueue(store, "lost chat", chat=KICKED)
    await drain(chat_delivery(store, notifier))
    assert [chat for chat, _ in notifier.delivered] == [OLD, OTHER]  # the other alert chats
    assert all("chat not found" in text for _, text in notifier.delivered)
    assert [row[2] for row in await store.outbox_rows() if row[1] == KICKED] == ["failed"]


async def test_a_revoked_token_backs_off_doubling_to_the_cap_and_loses_nothing(
    store: SqliteAlertStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    notifier = ChatNotifier(clock)
    notifier.token_refusals = 7
    waits: list[tuple[int, float, str]] = []
    delivery = chat_delivery(store, notifier, clock, waits, initial=1.0, cap=8.0)
    await enqueue(store, "queued during the outage", chat=OTHER)
    metrics = Metrics()

    def gauge() -> float | None:
        delivery_gauges(metrics, delivery)
        return metrics.value("replbot_alert_token_rejected")

    notifier.watch = gauge
    with caplog.at_level(logging.ERROR, logger="bot.services.monitor.delivery"):
        await drain(delivery)
    assert notifier.watched == [0, 1, 1, 1, 1, 1, 1, 1]  # 1 from the first 401 to the success
    assert gauge() == 0
    assert metrics.value("replbot_alert_token_rejections_total") == 7
    times = [at for _, at in notifier.attempts]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [1, 2, 4, 8, 8, 8, 8]  # doubled, capped; never two tries at one instant
    assert notifier.delivered == [(OTHER, "queued during the outage")]  # kept queued, then sent
    assert delivery.token_rejections == 7 and not delivery.token_rejected
    assert [row[2] for row in await store.outbox_rows()] == ["sent"]
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "401" in critical[0].getMessage()  # loud, once per outage
    assert {why for _, _, why in waits} == {"unauthorized"}


async def test_a_revoked_token_is_one_back_off_for_every_chat(store: SqliteAlertStore) -> None:
    clock = FakeClock()
    notifier = ChatNotifier(clock)
    notifier.token_refusals = 6
    delivery = chat_delivery(store, notifier, clock, initial=1.0, cap=4.0)
    await enqueue(store, "a", chat=OLD)
    await enqueue(store, "b", chat=OTHER)
    await enqueue(store, "c", chat=KICKED)
    await drain(delivery)
    assert sorted(text for _, text in notifier.delivered) == ["a", "b", "c"]
    for chat in (OLD, OTHER, KICKED):
        mine = [at for c, at in notifier.attempts if c == chat]
        assert all(b - a >= 1 for a, b in itertools.pairwise(mine)), mine  # no spinning
    assert len(notifier.attempts) <= 6 + 3
