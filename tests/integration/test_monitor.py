"""The alert monitor against real PostgreSQL and the real PTB client over the fake Bot API.

Every test has its own primary + replica (it stops nodes and creates slots) and its own audit
database; alerts go to a group chat's forum topic through the persistent outbox and a
``telegram.Bot`` (TelegramNotifier), exactly as in ``replbot run``. Waiting is done on
events (a message at the fake Bot API, N evaluated polls), never on fixed sleeps; where time
matters (repeats), the clock is moved instead of waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.adapters.telegram_notifier import TelegramNotifier
from bot.app import Runtime, command_menu, delivery_gauges, open_runtime, redactor_for
from bot.clock import SystemClock
from bot.logsetup import install_redaction
from bot.models import AlertRule, Outcome, OutgoingMessage
from bot.sandbox import LocalReplicationSet, PgBinaries
from bot.services.monitor.delivery import DeliveryService
from bot.services.monitor.metrics import Metrics
from handlers.alerts import DeliveryRenderer
from tests.conftest import (
    ADMIN_ID,
    GROUP_CHAT_ID,
    LEDGER,
    OPERATOR_ID,
    VIEWER_ID,
    make_config,
    short_tmpdir,
)
from tests.fakebotapi import BOT_KICKED, CHAT_NOT_FOUND, FakeBotApi, RecordedCall
from tests.integration._helpers import scratch_set, wait_until
from tests.unit.fakes import FakeClock

pytestmark = pytest.mark.integration

TOPIC = 77
MONITOR = f"""
[monitor]
interval = "0.2s"
timeout = "2s"
repeat_interval = "10min"
send_timeout = "0.5s"
send_retry_initial = "0.1s"
send_retry_max = "0.3s"

[clusters.monitor]
alert_chat_ids = [{GROUP_CHAT_ID}]
message_thread_id = {TOPIC}
"""


class JumpClock:
    """Real time plus an offset the test can move forward (for the repeat interval)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class MonitoredBot:
    """The bot as ``replbot run`` wires it: PTB polling + monitor + outbox delivery."""

    api: FakeBotApi
    runtime: Runtime
    waits: list[tuple[int, float, str]] = field(default_factory=list)

    def alert_calls(self, after: int = 0) -> list[RecordedCall]:
        """Accepted sendMessage calls to the alert chat, in order."""
        return [
            c
            for c in self.api.calls[after:]
            if c.method == "sendMessage" and c.ok and c.params.get("chat_id") == GROUP_CHAT_ID
        ]

    def alert_texts(self, after: int = 0) -> list[str]:
        return [str(c.result["text"]) for c in self.alert_calls(after)]

    async def message(
        self, predicate: Callable[[str], bool], after: int = 0, timeout: float = 30
    ) -> RecordedCall:
        """Wait for an alert message whose (plain) text satisfies ``predicate``."""
        return await self.api.await_for(
            "sendMessage",
            lambda c: (
                c.ok
                and c.params.get("chat_id") == GROUP_CHAT_ID
                and predicate(str(c.result["text"]))
            ),
            timeout=timeout,
            after=after,
        )

    async def settle(self, polls: int = 4) -> None:
        """Let ``polls`` more polls be evaluated and the outbox drain."""
        await self.runtime.monitor.wait_rounds(polls)
        assert self.runtime.delivery is not None
        assert await self.runtime.delivery.idle(timeout=30)

    def alert_id(self, rule: AlertRule, node: str = "pg2") -> int:
        return next(a.id for a in self.runtime.alerts.firing() if (a.rule, a.node) == (rule, node))


@contextlib.asynccontextmanager
async def monitored(
    rset: LocalReplicationSet,
    api: FakeBotApi,
    audit_path: Path,
    extra: str = "",
    clock: JumpClock | None = None,
    watch_polls: bool = False,
) -> AsyncIterator[MonitoredBot]:
    """Start the bot on ``rset`` (PTB polling ``api``), with the monitor and its delivery;
    ``watch_polls``: getUpdates answers are counted for /healthz, as ``replbot run`` does."""
    from handlers.telegram import ALLOWED_UPDATES, build_application

    config = make_config(rset, audit_path, extra=MONITOR + extra)
    if audit_path not in LEDGER.audit_paths:
        LEDGER.audit_paths.append(audit_path)
    redactor = redactor_for(config)
    install_redaction(redactor)
    runtime = await open_runtime(config, redactor, clock)
    bot = MonitoredBot(api, runtime)
    app = build_application(
        runtime.dispatcher,
        api.token,
        api.base_url,
        command_menu(),
        on_poll_ok=runtime.note_poll if watch_polls else None,
    )
    if watch_polls:
        runtime.watch_polling()
    try:
        await app.initialize()
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(
            poll_interval=0.0, timeout=1, allowed_updates=ALLOWED_UPDATES
        )
        await api.await_polling()
        notifier = TelegramNotifier(api.token, api.base_url, config.monitor.send_timeout_s)
        await runtime.start_monitor(notifier, on_wait=lambda *w: bot.waits.append(w))
        try:
            yield bot
        finally:
            await runtime.stop_monitor()
            await app.updater.stop()
            await app.stop()
    finally:
        await app.shutdown()
        await runtime.close()


@pytest.fixture(scope="module")
def module_replication(pg_binaries: PgBinaries) -> Iterator[LocalReplicationSet]:
    with scratch_set(pg_binaries) as rset:
        yield rset


@pytest.fixture
def replication(module_replication: LocalReplicationSet) -> Iterator[LocalReplicationSet]:
    """One set per major for the module's tests, which stop and start pg2 or add a slot they
    drop again; each test has its own bot, audit file and alert store. After each test the set
    is brought back: pg2 running and streaming through its slot, no other slot."""
    rset = module_replication
    yield rset
    if not rset.is_running("pg2"):
        rset.start_node("pg2")
    rset.wait_streaming("pg2")
    rset.psql(  # a slot a failed test left behind would fail the tests after it
        "pg1",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        " WHERE slot_name <> 'pg2' AND NOT active",
    )
    assert rset.psql("pg1", "SELECT string_agg(slot_name, ',') FROM pg_replication_slots") == "pg2"


@pytest.fixture
def fresh_replication(pg_binaries: PgBinaries) -> Iterator[LocalReplicationSet]:
    """A set of its own: for the slot alerts, which must see pg2's slot as it is on a new set
    (never inactive, holding no WAL)."""
    with scratch_set(pg_binaries) as rset:
        yield rset


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    fake = FakeBotApi()
    LEDGER.secrets.add(fake.token)
    LEDGER.fake_apis.append(fake)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def audit_file() -> Path:
    return short_tmpdir("rbm") / "audit.sqlite3"


def not_streaming(text: str) -> bool:
    return "CRITICAL main/pg2: replica pg2 is not streaming" in text


def resolved_not_streaming(text: str) -> bool:
    return "RESOLVED main/pg2: replica pg2 is not streaming" in text


async def test_a_stopped_replica_alerts_the_chat_and_resolves_once_it_streams_again(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    async with monitored(replication, api, audit_file()) as bot:
        await bot.settle()
        assert bot.alert_texts() == []  # a healthy cluster says nothing
        await asyncio.to_thread(replication.stop_node, "pg2")
        firing = await bot.message(not_streaming)
        assert firing.params["message_thread_id"] == TOPIC
        rows = firing.params["reply_markup"]["inline_keyboard"]
        alert_id = bot.alert_id(AlertRule.NOT_STREAMING)
        assert [f"al:ack:{alert_id}", f"al:mute:{alert_id}"] in [
            [button["callback_data"] for button in row] for row in rows
        ]
        await asyncio.to_thread(replication.start_node, "pg2")
        await bot.message(resolved_not_streaming, timeout=60)
        await bot.settle()
        texts = bot.alert_texts()
        assert sum(not_streaming(t) for t in texts) == 1
        assert sum(resolved_not_streaming(t) for t in texts) == 1
        assert bot.runtime.alerts.firing() == []


async def test_a_restart_while_an_alert_fires_neither_refires_it_nor_forgets_it(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    audit = audit_file()
    async with monitored(replication, api, audit) as bot:
        await asyncio.to_thread(replication.stop_node, "pg2")
        await bot.message(not_streaming)
        await bot.message(lambda t: "CRITICAL main/pg2: pg2 (replica) is down" in t)
        await bot.settle()
    mark = api.mark()
    async with monitored(replication, api, audit) as bot:
        await bot.settle(polls=5)
        assert {a.rule for a in bot.runtime.alerts.firing()} == {
            AlertRule.NOT_STREAMING,
            AlertRule.NODE_DOWN,
        }
        assert bot.alert_texts(after=mark) == []  # nothing announced twice
        await asyncio.to_thread(replication.start_node, "pg2")
        await bot.message(resolved_not_streaming, after=mark, timeout=60)
        await bot.message(lambda t: "RESOLVED main/pg2: pg2 (replica) is down" in t, after=mark)
        await bot.settle()
        assert not any("CRITICAL" in t for t in bot.alert_texts(after=mark))


async def test_an_inactive_slot_holding_wal_raises_slot_alerts_with_retained_bytes(
    fresh_replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    replication = fresh_replication
    thresholds = (
        'slot_inactive_after = "0s"\n'
        'slot_retained_warning = "1MB"\n'
        'slot_retained_critical = "1GB"\n'
    )
    async with monitored(replication, api, audit_file(), extra=thresholds) as bot:
        await bot.settle()
        await asyncio.to_thread(
            replication.psql,
            "pg1",
            "SELECT pg_create_physical_replication_slot('stale', true);"
            "CREATE TABLE filler AS SELECT g FROM generate_series(1, 50000) g;"
            "SELECT pg_switch_wal();",
        )
        inactive = await bot.message(lambda t: "slot stale on pg1 is inactive" in t)
        retained = await bot.message(lambda t: "slot stale keeps" in t)
        text = str(retained.result["text"])
        match = re.search(r"keeps ([0-9.]+) (MB|GB) of WAL on pg1", text)
        assert match is not None, text
        size = float(match.group(1)) * (1024 if match.group(2) == "GB" else 1)
        assert size >= 1.0
        assert "WARNING" in text and "/dropslot stale" in text
        assert "retains" in str(inactive.result["text"])
        gauge = bot.runtime.metrics.value(
            "replbot_slot_retained_bytes", cluster="main", slot="stale"
        )
        assert gauge is not None and gauge >= 1024**2
        # The replica's own slot may pass 1 MB for a poll while pg2 replays the filler on a
        # loaded host; once pg2 has caught up its slot holds nothing worth an alert.
        await wait_until(
            lambda: (
                replication.psql(
                    "pg1",
                    "SELECT pg_current_wal_lsn() - restart_lsn < 1024 * 1024 "
                    "FROM pg_replication_slots WHERE slot_name = 'pg2'",
                )
                == "t"
            ),
            "the replica's slot to hold less than 1 MB",
        )
        await bot.settle()
        slot_rules = {AlertRule.SLOT_INACTIVE, AlertRule.SLOT_RETAINED, AlertRule.SLOT_AT_RISK}
        assert not [
            a for a in bot.runtime.alerts.firing() if a.rule in slot_rules and a.subject == "pg2"
        ]
        assert not any("slot pg2 on pg1 is inactive" in t for t in bot.alert_texts())
        await asyncio.to_thread(replication.psql, "pg1", "SELECT pg_drop_replication_slot('stale')")
        await bot.message(lambda t: "RESOLVED main/pg1: slot stale on pg1 is inactive" in t)


async def test_an_idle_primary_raises_no_lag_alert(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    strict = (
        'lag_time_warning = "1s"\nlag_time_critical = "2s"\n'
        'lag_bytes_warning = "1MB"\nlag_bytes_critical = "2MB"\nlag_for = "0s"\n'
        '\n[metrics]\nlisten = "127.0.0.1:0"\n'
    )
    async with monitored(replication, api, audit_file(), extra=strict) as bot:
        await asyncio.to_thread(replication.psql, "pg1", "CREATE TABLE touched (x int)")
        await bot.settle(polls=15)  # 3 s idle: longer than the 1 s time-lag threshold
        assert bot.alert_texts() == []
        assert bot.runtime.alerts.firing() == []
        lag = bot.runtime.metrics.value("replbot_replica_lag_seconds", cluster="main", node="pg2")
        assert lag == 0.0
        assert bot.runtime.metrics_server is not None
        reply = await asyncio.wait_for(http_get(bot.runtime.metrics_server.port), 10)
        assert reply.startswith("HTTP/1.1 200 OK")
        assert 'replbot_replica_lag_bytes{cluster="main",node="pg2"} 0' in reply
        assert 'replbot_node_up{cluster="main",node="pg1"} 1' in reply
        assert "replbot_alert_messages_pending 0" in reply


async def http_get(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data.decode()


async def test_alerts_outlast_flood_control_errors_and_timeouts_delivered_once_in_order(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    async with monitored(replication, api, audit_file()) as bot:
        await bot.settle()
        api.fail_next("sendMessage", status=429, retry_after=1)
        api.fail_next("sendMessage", status=500, times=3)
        api.fail_next("sendMessage", status=502, times=1, description="Bad Gateway")
        api.fail_next("sendMessage", status=500, times=2, delay=0.8)  # longer than send_timeout
        mark = api.mark()
        await asyncio.to_thread(replication.stop_node, "pg2")
        await bot.runtime.monitor.wait_rounds(4)
        await asyncio.to_thread(replication.start_node, "pg2")
        await asyncio.to_thread(replication.wait_streaming, "pg2")
        await bot.message(resolved_not_streaming, after=mark, timeout=60)
        await bot.settle()
        rows = await bot.runtime.alert_store.outbox_rows()
        assert len(rows) >= 3  # not streaming, node down, resolved (maybe grouped)
        assert all(state == "sent" for _, _, state, _, _ in rows)
        sent = [str(c.params["text"]) for c in bot.alert_calls(after=mark)]
        assert sent == [html for _, _, _, html, _ in rows]  # each once, in outbox order
        failed = [c for c in api.calls[mark:] if c.method == "sendMessage" and not c.ok]
        assert [c.status for c in failed] == [429, 500, 500, 500, 502, 500, 500]
        assert (GROUP_CHAT_ID, pytest.approx(1.1), "retry_after") in bot.waits


async def test_ack_and_mute_stop_repeats_and_are_refused_for_a_viewer(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    clock = JumpClock()
    async with monitored(replication, api, audit_file(), clock=clock) as bot:
        await asyncio.to_thread(replication.stop_node, "pg2")
        await bot.message(not_streaming)
        await bot.message(lambda t: "pg2 (replica) is down" in t)
        await bot.settle()
        streaming_id = bot.alert_id(AlertRule.NOT_STREAMING)
        down_id = bot.alert_id(AlertRule.NODE_DOWN)
        message_of = {
            alert_id: next(
                c.result["message_id"]
                for c in bot.alert_calls()
                if f"alert #{alert_id}" in str(c.result["text"])
            )
            for alert_id in (streaming_id, down_id)
        }

        mark = api.mark()
        api.push_callback(
            VIEWER_ID, f"al:ack:{streaming_id}", message_of[streaming_id], GROUP_CHAT_ID
        )
        refusal = await bot.message(lambda t: "needs the operator role" in t, after=mark)
        assert "alert.ack needs the operator role" in str(refusal.result["text"])

        clock.jump(11 * 60)  # past the 10 min repeat interval: both repeat
        await bot.message(lambda t: "still firing" in t and f"#{streaming_id}" in t, after=mark)
        await bot.message(lambda t: "still firing" in t and f"#{down_id}" in t, after=mark)

        mark = api.mark()
        api.push_callback(
            OPERATOR_ID, f"al:ack:{streaming_id}", message_of[streaming_id], GROUP_CHAT_ID
        )
        await bot.message(lambda t: f"alert #{streaming_id}" in t and "acknowledged" in t, mark)
        api.push_callback(ADMIN_ID, f"al:mute:{down_id}", message_of[down_id], GROUP_CHAT_ID)
        await bot.message(lambda t: f"alert #{down_id}" in t and "muted for 1 h" in t, mark)
        answered = [c for c in api.calls[mark:] if c.method == "answerCallbackQuery"]
        assert len(answered) == 2

        mark = api.mark()
        clock.jump(11 * 60)
        await bot.settle(polls=5)
        repeated = [t for t in bot.alert_texts(after=mark) if "still firing" in t]
        # (the replica's slot has been inactive for 22 min by now: that alert may repeat)
        assert not any(f"alert #{streaming_id}" in t for t in repeated)
        assert not any(f"alert #{down_id}" in t for t in repeated)

        rows = await bot.runtime.audit.recent(50)
        presses = [(r.command, r.user_id, r.outcome) for r in rows if r.command.startswith("alert")]
        assert sorted(presses) == sorted(
            [
                ("alert.ack", VIEWER_ID, Outcome.REFUSED),
                ("alert.ack", OPERATOR_ID, Outcome.INTENT),
                ("alert.ack", OPERATOR_ID, Outcome.OK),
                ("alert.mute", ADMIN_ID, Outcome.INTENT),
                ("alert.mute", ADMIN_ID, Outcome.OK),
            ]
        )

        await asyncio.to_thread(replication.start_node, "pg2")
        await bot.message(resolved_not_streaming, after=mark, timeout=60)  # acked still resolves
        await bot.settle()
        texts = bot.alert_texts(after=mark)
        assert not any("pg2 (replica) is down" in t for t in texts)  # muted: no resolved either


# --- delivery when Telegram answers for the chat or the bot, not for one message ------------

SUPERGROUP = -100123  # what the fake Bot API says GROUP_CHAT_ID became


def to_chat(chat: int, predicate: Callable[[str], bool]) -> Callable[[RecordedCall], bool]:
    return lambda c: c.ok and c.params.get("chat_id") == chat and predicate(str(c.result["text"]))


async def test_alerts_follow_a_group_upgraded_to_a_supergroup_also_after_a_restart(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    audit = audit_file()
    api.migrate_chat(GROUP_CHAT_ID, SUPERGROUP)
    async with monitored(replication, api, audit) as bot:
        await bot.settle()
        await asyncio.to_thread(replication.stop_node, "pg2")
        firing = await api.await_for("sendMessage", to_chat(SUPERGROUP, not_streaming))
        assert firing.params["message_thread_id"] == TOPIC
        await bot.settle()
        assert bot.runtime.delivery is not None
        assert bot.runtime.delivery.migrations == 1
    to_old = [c for c in api.calls_of("sendMessage") if c.params.get("chat_id") == GROUP_CHAT_ID]
    assert [(c.status, c.response["parameters"]) for c in to_old] == [
        (400, {"migrate_to_chat_id": SUPERGROUP})  # refused once, then followed
    ]

    mark = api.mark()  # a restart: the config still says GROUP_CHAT_ID
    async with monitored(replication, api, audit) as bot:
        await asyncio.to_thread(replication.start_node, "pg2")
        await api.await_for(
            "sendMessage", to_chat(SUPERGROUP, resolved_not_streaming), timeout=60, after=mark
        )
        await bot.settle()
        later = [c for c in api.calls[mark:] if c.method == "sendMessage"]
        assert later and all(c.params["chat_id"] == SUPERGROUP for c in later)
        rows = await bot.runtime.alert_store.outbox_rows()
        assert {(chat, state) for _, chat, state, _, _ in rows} == {(SUPERGROUP, "sent")}
        exposition = await bot.runtime.render_metrics()
        assert f'replbot_alert_chat_refusing{{chat="{SUPERGROUP}"}} 0' in exposition


KICKED, OTHER, FALLBACK = -2001, -2002, -2003


@contextlib.asynccontextmanager
async def delivering(
    api: FakeBotApi,
    path: Path,
    clock: FakeClock | None = None,
    waits: list[tuple[int, float, str]] | None = None,
) -> AsyncIterator[tuple[SqliteAlertStore, DeliveryService]]:
    """The outbox and its delivery through TelegramNotifier (the real PTB Bot) to ``api``."""
    store = SqliteAlertStore(path)
    await store.open()
    delivery = DeliveryService(
        store,
        TelegramNotifier(api.token, api.base_url, 2.0),
        clock or SystemClock(),
        retry_initial_s=1.0 if clock else 0.05,
        retry_max_s=8.0 if clock else 0.2,
        on_wait=None if waits is None else (lambda *w: waits.append(w)),
        formatter=DeliveryRenderer(),
        alert_chats=(KICKED, OTHER),
        fallback_chat=FALLBACK,
        sleep=clock.sleep if clock else None,
    )
    try:
        yield store, delivery
    finally:
        await delivery.stop()
        await store.close()


async def enqueue(store: SqliteAlertStore, chat: int, *texts: str) -> None:
    async with store.transaction() as tx:
        for text in texts:
            await tx.enqueue(chat, None, OutgoingMessage(f"<b>{text}</b>"))


@pytest.mark.parametrize(
    ("status", "description"),
    [(403, BOT_KICKED), (400, CHAT_NOT_FOUND), (404, "Not Found")],
    ids=["403-kicked", "400-chat-not-found", "404"],
)
async def test_a_chat_refusing_the_bot_is_reported_once_and_its_alerts_go_to_the_fallback(
    api: FakeBotApi, status: int, description: str
) -> None:
    path = short_tmpdir("rbd") / "audit.sqlite3"
    api.refuse_chat(KICKED, status, description)
    async with delivering(api, path) as (store, delivery):
        await enqueue(store, KICKED, "first alert", "second alert")
        await delivery.start()
        assert await delivery.idle(timeout=30)
        metrics = Metrics()
        delivery_gauges(metrics, delivery)
        assert metrics.value("replbot_alert_chat_refusing", chat=str(KICKED)) == 1
        assert metrics.value("replbot_alert_chat_refusing", chat=str(OTHER)) == 0
        assert metrics.value("replbot_alert_chat_refusals_total", chat=str(KICKED)) == 2
    notices = api.sent_texts(OTHER, plain=True)
    assert len(notices) == 1  # once per refusing chat, not once per message
    said = description.rsplit(": ", 1)[-1].lower()  # PTB drops "Bad Request: ", capitalises
    assert f"alert chat {KICKED} refuses the bot: " in notices[0]
    assert said in notices[0].lower()
    assert str(FALLBACK) in notices[0]
    fallback = api.sent_texts(FALLBACK, plain=True)
    assert sum(f"alert chat {KICKED} refuses the bot: " in t for t in fallback) == 1
    assert [t.split("\n")[-1] for t in fallback if "meant for alert chat" in t] == [
        "first alert",
        "second alert",
    ]

    mark = api.mark()  # a restart: the chat is still known to refuse, no second notice
    async with delivering(api, path) as (store, delivery):
        await enqueue(store, KICKED, "third alert")
        await delivery.start()
        assert await delivery.idle(timeout=30)
        rows = await store.outbox_rows()
    texts = [(c.params["chat_id"], str(c.result["text"])) for c in api.calls[mark:] if c.ok]
    assert [chat for chat, _ in texts] == [FALLBACK]
    assert texts[0][1].endswith("third alert")
    assert [state for _, chat, state, _, _ in rows if chat == KICKED] == ["failed"] * 3


async def test_a_revoked_token_is_retried_with_growing_pauses_and_the_alert_kept(
    api: FakeBotApi,
) -> None:
    path = short_tmpdir("rbd") / "audit.sqlite3"
    api.refuse_chat(OTHER, 401, "Unauthorized")
    clock = FakeClock()
    waits: list[tuple[int, float, str]] = []
    async with delivering(api, path, clock, waits) as (store, delivery):
        await enqueue(store, OTHER, "during the outage")
        await delivery.start()
        async with asyncio.timeout(30):
            while sum(c.status == 401 for c in api.calls) < 5:
                await asyncio.sleep(0.01)
        assert delivery.token_rejected
        assert [state for _, _, state, _, _ in await store.outbox_rows()] == ["pending"]
        api.accept_chat(OTHER)  # the token is good again
        assert await delivery.idle(timeout=30)
        assert not delivery.token_rejected
    refused = [c for c in api.calls if c.status == 401]
    pauses = [seconds for _, seconds, why in waits if why == "unauthorized"]
    assert len(pauses) == len(refused) == delivery.token_rejections  # a pause after every 401
    assert pauses[:4] == [1, 2, 4, 8] and max(pauses) == 8  # doubled, capped
    assert api.sent_texts(OTHER, plain=True) == ["during the outage"]
    assert api.sent_texts(FALLBACK) == []  # no fallback helps when the token is the problem
