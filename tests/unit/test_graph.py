"""The monitor history store, the charts drawn from it, their captions, and the chart attached
to lag and slot alerts (real SQLite, real matplotlib; a fake notifier and clock)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.adapters.charts_matplotlib import MatplotlibCharts
from bot.adapters.history_sqlite import SqliteHistoryStore
from bot.errors import InvalidInput
from bot.models import (
    Alert,
    AlertNotice,
    AlertRule,
    AlertState,
    ChartRef,
    NoticeKind,
    OutgoingMessage,
    ReplicaSample,
    Severity,
    SlotSample,
)
from bot.services.charts import ChartService
from bot.services.monitor.delivery import DeliveryService
from handlers.alerts import AlertRenderer
from handlers.render import graph as render_graph
from tests.unit.fakes import FakeClock, make_config
from tests.unit.worded import raises_worded

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
HOUR = 3600.0
DAY = 86400.0
MB = 1024**2
CHAT = -100


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature and its CRC."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    body = png[16 : 16 + 13]
    (crc,) = struct.unpack(">I", png[29:33])
    assert zlib.crc32(kind + body) == crc, "IHDR checksum wrong"
    width, height = struct.unpack(">II", body[:8])
    assert png.endswith(b"IEND\xaeB`\x82"), "PNG truncated"
    return width, height


def replica(at: float, lag: int | None, streaming: bool = True, name: str = "pg2") -> ReplicaSample:
    return ReplicaSample("main", name, at, lag, None if lag is None else lag / MB, streaming)


def slot(at: float, retained: int, name: str = "pg2") -> SlotSample:
    return SlotSample("main", name, at, retained)


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[SqliteHistoryStore]:
    store = SqliteHistoryStore(tmp_path / "bot.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# --- the history store ---------------------------------------------------------------------


async def test_history_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = SqliteHistoryStore(path)
    await store.open()
    await store.record([replica(NOW - 10, 5 * MB, streaming=False)], [slot(NOW - 10, 7 * MB)])
    await store.close()

    again = SqliteHistoryStore(path)
    await again.open()
    try:
        found = await again.history("main", NOW - HOUR)
    finally:
        await again.close()
    assert found.replicas == (replica(NOW - 10, 5 * MB, streaming=False),)
    assert found.slots == (slot(NOW - 10, 7 * MB),)


async def test_polls_older_than_6h_become_one_point_per_minute_keeping_peaks_and_outages(
    history: SqliteHistoryStore,
) -> None:
    old = (NOW - 7 * HOUR) // 60 * 60  # a minute boundary, 7 h ago
    polls = [replica(old + 5 * i, i * MB, streaming=i != 3) for i in range(12)]  # one minute
    polls.append(replica(old + 60, 1 * MB))  # the next minute: one poll
    recent = [replica(NOW - 5 * i, 2 * MB) for i in range(1, 4)]  # full resolution stays
    await history.record(polls + recent, [slot(old + 5 * i, i * MB) for i in range(12)])

    folded, dropped = await history.compact(NOW)

    found = await history.history("main", NOW - DAY)
    assert folded == 13 + 12 and dropped == 0
    points = [(r.at, r.lag_bytes, r.streaming) for r in found.replicas]
    assert points[:2] == [(old, 11 * MB, False), (old + 60, 1 * MB, True)]
    assert len(points) == 2 + 3  # the recent polls untouched
    assert [(s.at, s.retained_bytes) for s in found.slots] == [(old, 11 * MB)]
    assert await history.counts() == {
        "replica_history.minute": 2,
        "replica_history.full": 3,
        "slot_history.minute": 1,
    }
    assert await history.compact(NOW) == (0, 0)  # folding again changes nothing


async def test_points_older_than_7_days_are_deleted(history: SqliteHistoryStore) -> None:
    await history.record(
        [replica(NOW - 8 * DAY, MB), replica(NOW - 6 * DAY, 2 * MB)],
        [slot(NOW - 8 * DAY, MB)],
    )
    await history.compact(NOW)
    found = await history.history("main", 0)
    assert [r.lag_bytes for r in found.replicas] == [2 * MB]
    assert found.slots == ()


async def test_history_is_kept_per_cluster(history: SqliteHistoryStore) -> None:
    other = ReplicaSample("reports", "pg2", NOW - 5, 9 * MB, 9.0, True)
    await history.record([replica(NOW - 5, MB), other], [])
    assert [r.lag_bytes for r in (await history.history("main", 0)).replicas] == [MB]
    assert [r.lag_bytes for r in (await history.history("reports", 0)).replicas] == [9 * MB]


# --- charts ----------------------------------------------------------------------------------


def charts(history: SqliteHistoryStore) -> ChartService:
    return ChartService(
        make_config(), history, MatplotlibCharts(), FakeClock(NOW - 1_700_000_000.0)
    )


async def test_an_empty_history_draws_a_full_size_png_and_says_so(
    history: SqliteHistoryStore,
) -> None:
    ref = ChartRef("main", None, 6 * HOUR)
    png, summary = await charts(history).draw(ref, render_graph.labels(ref))
    assert png_size(png) == (1000, 600)
    assert summary.samples == 0
    assert render_graph.caption(summary) == "📈 main: no history in the last 6 h yet"


async def test_one_point_draws_and_the_caption_leads_with_the_peak(
    history: SqliteHistoryStore,
) -> None:
    at = NOW - 48 * 60  # 07:12 UTC
    await history.record([replica(at, 84 * MB)], [slot(at, 90 * MB)])
    ref = ChartRef("main", "pg2", 6 * HOUR)
    png, summary = await charts(history).draw(ref, render_graph.labels(ref))
    assert png_size(png) == (1000, 600)
    assert (summary.samples, summary.peak_bytes, summary.now_bytes) == (2, 84 * MB, 84 * MB)
    assert render_graph.caption(summary) == (
        "📈 <b>pg2</b>: lag peaked at 84.0 MB at 07:12, now 84.0 MB"
    )


async def test_a_week_of_minutes_draws_with_outages_and_the_small_size(
    history: SqliteHistoryStore,
) -> None:
    replicas, slots = [], []
    for minute in range(7 * 24 * 60 - 1):
        at = NOW - 7 * DAY + 60 + minute * 60
        down = 3000 <= minute < 3030  # half an hour not streaming
        replicas.append(replica(at, (minute % 500) * MB if not down else None, streaming=not down))
        replicas.append(replica(at, 0, name="pg3"))
        slots.append(slot(at, minute * MB))
    await history.record(replicas, slots)
    ref = ChartRef("main", None, 7 * DAY)
    service = charts(history)
    data = await service.data(ref, render_graph.labels(ref))
    assert [name for name, _ in data.replicas] == ["pg2", "pg3"]
    assert data.outages() == [(data.replicas[0][1][3000].at, data.replicas[0][1][3030].at)]
    png, summary = await service.draw(ref, render_graph.labels(ref), small=True)
    assert png_size(png) == (800, 480)
    assert summary.replica == "pg2" and summary.peak_bytes == 499 * MB
    assert summary.outage_s == 30 * 60
    caption = render_graph.caption(summary)
    assert caption.startswith("📈 <b>main/pg2</b>: lag peaked at 499.0 MB at ")
    assert caption.endswith("; not streaming for 30 min in 7 d")


def test_graph_targets_name_a_cluster_or_a_node_and_refuse_the_unclear(
    tmp_path: Path,
) -> None:
    service = ChartService(
        make_config(), None, MatplotlibCharts(), FakeClock(NOW - 1_700_000_000.0)
    )  # type: ignore[arg-type]
    names = [c.name for c in make_config().clusters]
    assert service.target(names[0], None, "24h") == ChartRef(names[0], None, DAY)
    with raises_worded(InvalidInput, "several clusters"):
        service.target(None, None, "6h")
    with raises_worded(InvalidInput, "unknown window"):
        service.target(names[0], None, "1y")
    with raises_worded(InvalidInput, "no cluster or node called nosuch"):
        service.target("nosuch", None, "6h")


# --- the chart under an alert ----------------------------------------------------------------


def lag_alert(rule: AlertRule = AlertRule.BYTE_LAG) -> Alert:
    figures = {"lag_bytes": 90 * MB, "threshold": 50 * MB, "for_s": 60.0}
    return Alert(7, "main", "pg2", rule, "", Severity.WARNING, figures, AlertState.FIRING, NOW, NOW)


def test_a_firing_lag_alert_asks_for_the_chart_of_its_replica_when_switched_on() -> None:
    notice = AlertNotice(NoticeKind.FIRING, lag_alert(), NOW)
    (message,) = AlertRenderer(3600, charts=True).messages([notice])
    assert message.chart == ChartRef("main", "pg2")
    (plain,) = AlertRenderer(3600).messages([notice])
    assert plain.chart is None and plain.html == message.html
    resolved = AlertNotice(NoticeKind.RESOLVED, lag_alert(), NOW)
    assert AlertRenderer(3600, charts=True).messages([resolved])[0].chart is None


class PhotoNotifier:
    """Delivers texts; pictures too, unless told to fail."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.photos: list[tuple[int, bytes, str, int | None]] = []

    async def send(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        self.texts.append(message.html)
        return len(self.texts)

    async def send_photo(
        self,
        chat_id: int,
        thread_id: int | None,
        png: bytes,
        caption_html: str,
        reply_to: int | None = None,
    ) -> int:
        self.photos.append((chat_id, png, caption_html, reply_to))
        return 100 + len(self.photos)

    async def close(self) -> None:
        pass


async def test_an_alert_in_the_outbox_gets_its_chart_attached_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.sqlite3"
    store = SqliteAlertStore(path)
    await store.open()
    history = SqliteHistoryStore(path)
    await history.open()
    try:
        await history.record([replica(NOW - 60, 90 * MB)], [])
        notice = AlertNotice(NoticeKind.FIRING, lag_alert(), NOW)
        async with store.transaction() as tx:
            for message in AlertRenderer(3600, charts=True).messages([notice]):
                await tx.enqueue(CHAT, None, message)
        await store.close()  # the chart request is stored with the message
        store = SqliteAlertStore(path)
        await store.open()
        service = charts(history)
        notifier = PhotoNotifier()

        async def attach(chat: int, thread: int | None, ref: ChartRef, reply_to: int) -> None:
            png, summary = await service.draw(ref, render_graph.labels(ref), small=True)
            await notifier.send_photo(chat, thread, png, render_graph.caption(summary), reply_to)

        delivery = DeliveryService(
            store, notifier, FakeClock(NOW - 1_700_000_000.0), attach_chart=attach
        )
        await delivery.start()
        assert await delivery.idle(timeout=10)
        await delivery.stop()
    finally:
        await store.close()
        await history.close()
    assert len(notifier.texts) == 1
    ((chat, png, caption, reply_to),) = notifier.photos
    assert (chat, reply_to) == (CHAT, 1)
    assert png_size(png) == (800, 480)
    assert caption == "📈 <b>pg2</b>: lag peaked at 90.0 MB at 07:59, now 90.0 MB"


async def test_the_text_alert_is_delivered_when_the_chart_cannot_be_drawn(
    tmp_path: Path,
) -> None:
    store = SqliteAlertStore(tmp_path / "bot.sqlite3")
    await store.open()
    notifier = PhotoNotifier()

    async def broken(chat: int, thread: int | None, ref: ChartRef, reply_to: int) -> None:
        raise RuntimeError("no fonts")

    try:
        async with store.transaction() as tx:
            await tx.enqueue(CHAT, None, OutgoingMessage("lag!", chart=ChartRef("main", "pg2")))
            await tx.enqueue(CHAT, None, OutgoingMessage("next"))
        delivery = DeliveryService(
            store, notifier, FakeClock(NOW - 1_700_000_000.0), attach_chart=broken
        )
        await delivery.start()
        assert await delivery.idle(timeout=10)
        await delivery.stop()
        rows = await store.outbox_rows()
    finally:
        await store.close()
    assert notifier.texts == ["lag!", "next"]
    assert notifier.photos == [] and delivery.chart_failures == 1
    assert [row[2] for row in rows] == ["sent", "sent"]
