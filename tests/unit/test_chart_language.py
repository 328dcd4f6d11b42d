"""Charts speak the reply language: the words handed to the real chart adapter (drawn in a
worker thread, which does not see the caller's language) and the captions are Russian in a
Russian reply and under the alerts of a Russian cluster; the PNG still decodes."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from dataclasses import astuple
from pathlib import Path

import pytest

from bot.adapters.charts_matplotlib import MatplotlibCharts
from bot.adapters.history_sqlite import SqliteHistoryStore
from bot.config import AppConfig, parse_config
from bot.models import ChartData, ChartRef, ReplicaSample
from bot.services.charts import ChartService
from handlers import i18n
from handlers.render import graph as render_graph
from tests.unit.fakes import PASSWORD, PASSWORD_ENV, VIEWER_ID, FakeClock, config_toml
from tests.unit.test_graph import DAY, HOUR, MB, NOW, png_size, replica, slot
from tests.unit.test_i18n_tour import english_runs


class RecordingCharts(MatplotlibCharts):
    """The real adapter, remembering what it was asked to draw (and in which thread's
    language it ran: it must not matter)."""

    def __init__(self) -> None:
        self.drawn: list[ChartData] = []

    def render_png(self, data: ChartData) -> bytes:
        self.drawn.append(data)
        return super().render_png(data)


class Photos:
    """The PhotoNotifier port, collecting pictures."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, str]] = []

    async def send_photo(
        self,
        chat_id: int,
        thread_id: int | None,
        png: bytes,
        caption_html: str,
        reply_to: int | None = None,
    ) -> int:
        self.sent.append((chat_id, png, caption_html))
        return len(self.sent)


def russian_main_config() -> AppConfig:
    """The test config with cluster ``main``'s alerts in Russian (telegram.language: en)."""
    text = config_toml().replace(
        '[[clusters]]\nname = "main"\n', '[[clusters]]\nname = "main"\nlanguage = "ru"\n', 1
    )
    return parse_config(tomllib.loads(text), {PASSWORD_ENV: PASSWORD})


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[SqliteHistoryStore]:
    store = SqliteHistoryStore(tmp_path / "bot.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def spike_and_outage(history: SqliteHistoryStore, days: float = 0.25) -> None:
    """One point a minute over ``days``: a lag spike, then ten minutes not streaming, then a
    replica that streams again."""
    points = int(days * DAY / 60)
    replicas, slots = [], []
    for minute in range(points):
        at = NOW - days * DAY + 60 + minute * 60
        down = points - 60 <= minute < points - 50
        lag = 84 * MB if minute == points // 2 else MB
        replicas.append(replica(at, None if down else lag, streaming=not down))
        slots.append(slot(at, minute * MB))
    await history.record(replicas, slots)


def assert_russian(text: str) -> None:
    assert not english_runs(text), english_runs(text)
    assert any("а" <= ch <= "я" for ch in text.lower()), text


@pytest.mark.parametrize(("window", "days"), [(6 * HOUR, 0.25), (7 * DAY, 7.0)])
async def test_a_russian_graph_hands_the_adapter_russian_words_and_gets_a_png(
    history: SqliteHistoryStore, window: float, days: float
) -> None:
    await spike_and_outage(history, days)
    renderer = RecordingCharts()
    service = ChartService(russian_main_config(), history, renderer, FakeClock(NOW - 1.7e9))
    ref = ChartRef("main", None, window)
    with i18n.language("ru"):
        png, summary = await service.draw(ref, render_graph.labels(ref))
        caption = render_graph.caption(summary)
    assert png_size(png) == (1000, 600)
    (data,) = renderer.drawn
    words = [w for w in astuple(data.labels) if isinstance(w, str) and "%" not in w]
    assert len(words) == 9
    for word in words:
        assert_russian(word)
    assert "%b" not in data.labels.day_format  # no English month names on the time axis
    assert caption.startswith("📈 <b>main/pg2</b>: пик отставания 84.0 MB в ")
    assert "поток не шёл 10 мин" in caption
    assert_russian(caption)


async def test_every_russian_caption_variant_and_the_empty_chart_are_russian(
    history: SqliteHistoryStore,
) -> None:
    renderer = RecordingCharts()
    service = ChartService(russian_main_config(), history, renderer, FakeClock(NOW - 1.7e9))
    ref = ChartRef("main", "pg2", 6 * HOUR)
    captions = []
    with i18n.language("ru"):
        png, summary = await service.draw(ref, render_graph.labels(ref))  # empty history
        captions.append(render_graph.caption(summary))
        assert png_size(png) == (1000, 600)
        await history.record([], [slot(NOW - 120, MB)])
        _, summary = await service.draw(ChartRef("main"), render_graph.labels(ChartRef("main")))
        captions.append(render_graph.caption(summary))  # slots only: no replica lag
        await history.record([replica(NOW - 60, 5 * MB, streaming=False)], [])
        _, summary = await service.draw(ref, render_graph.labels(ref))
        captions.append(render_graph.caption(summary))  # not streaming now
    assert captions[0] == "📈 main/pg2: за последние 6 ч истории пока нет"
    assert captions[1] == "📈 main: за последние 6 ч отставание реплик не записано"
    assert captions[2].startswith("📈 <b>pg2</b>: пик отставания 5.0 MB в ")
    assert "сейчас поток не идёт" in captions[2]
    for text in captions:
        assert_russian(text)
    assert_russian(renderer.drawn[0].labels.no_data)


async def test_the_chart_under_a_russian_clusters_alert_is_russian_and_others_stay_english(
    history: SqliteHistoryStore,
) -> None:
    from handlers.graph import alert_chart_sender

    await spike_and_outage(history)
    await history.record([ReplicaSample("dr", "dr2", NOW - 60, 3 * MB, 1.0, True)], [])
    config = russian_main_config()
    renderer = RecordingCharts()
    photos = Photos()
    send = alert_chart_sender(
        config, ChartService(config, history, renderer, FakeClock(NOW - 1.7e9)), photos
    )
    await send(-100, None, ChartRef("main", "pg2"), 1)  # delivery runs with no language set
    await send(-100, None, ChartRef("dr", "dr2"), 2)
    (_, png, russian), (_, _, english) = photos.sent
    assert png_size(png) == (800, 480)
    assert russian.startswith("📈 <b>pg2</b>: пик отставания 84.0 MB в ")
    assert_russian(russian)
    assert renderer.drawn[0].labels.title == "main/pg2: репликация за последние 6 ч (UTC)"
    assert english.startswith("📈 <b>dr2</b>: lag peaked at 3.0 MB at ")
    assert renderer.drawn[1].labels.title == "dr/dr2: replication, last 6 h (UTC)"


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_demos_ready_lines_point_to_graph_and_where_its_pictures_go(language: str) -> None:
    from bot.demo import charts_dir
    from handlers.render import demo_ready

    folder = str(charts_dir(russian_main_config()))
    with i18n.language(language):
        lines = demo_ready("pg1:5432, pg2:5433", "demo-admin", folder)
    (line,) = [line for line in lines if "/graph" in line]
    assert folder in line and "/graph pg2 24h" in line
    if language == "ru":
        for text in lines:
            assert not english_runs(text.replace(folder, " ")), text


async def test_graph_refusals_of_its_own_are_russian() -> None:
    from tests.unit.test_i18n_tour import russian_bot

    bot = russian_bot()  # no monitor history: no charts
    usage = (await bot.command("/graph a b c", user_id=VIEWER_ID)).sent[0].html
    assert usage == "❌ использование: /graph [cluster|node] [6h|24h|7d]"
    off = (await bot.command("/graph", user_id=VIEWER_ID)).sent[0].html
    assert "графиков нет: история монитора отключена" in off
    for text in (usage, off):
        assert not english_runs(text), english_runs(text)
