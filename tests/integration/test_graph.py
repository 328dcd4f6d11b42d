"""/graph end to end: the monitor polls a real cluster into the history, /graph through PTB
sends a decodable PNG with its caption to the fake Bot API (multipart sendPhoto); the demo's
console writes the picture to a file and prints its path."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.adapters.telegram_notifier import TelegramNotifier
from bot.app import open_runtime, redactor_for
from bot.config import parse_config
from bot.demo import PASSWORD_ENV, _console, demo_config_text
from bot.sandbox import LocalReplicationSet
from tests.conftest import LEDGER, VIEWER_ID, make_config, ptb_serving, short_tmpdir
from tests.fakebotapi import FakeBotApi
from tests.unit.test_graph import png_size

pytestmark = pytest.mark.integration

MONITOR = '[monitor]\ninterval = "0.2s"\ntimeout = "2s"\nrepeat_interval = "10min"\n'


async def test_graph_sends_the_monitored_lag_as_a_png_with_a_caption(
    pgset: LocalReplicationSet, fake_api: FakeBotApi
) -> None:
    base = short_tmpdir("rbg")
    config = make_config(pgset, base / "audit.sqlite3", extra=MONITOR)
    LEDGER.audit_paths.append(config.audit.path)
    runtime = await open_runtime(config, redactor_for(config))
    try:
        await runtime.start_monitor(TelegramNotifier(fake_api.token, fake_api.base_url, 2.0))
        await runtime.monitor.wait_rounds(3)
        async with ptb_serving(runtime, fake_api) as telegram:
            mark = telegram.send(VIEWER_ID, "/graph main 24h")
            call = await fake_api.await_for("sendPhoto", after=mark, timeout=30)
            english_done = fake_api.mark()
            await telegram.reply_to(VIEWER_ID, "/lang ru")  # the same chart, words in Russian
            mark_ru = telegram.send(VIEWER_ID, "/graph main 24h")
            call_ru = await fake_api.await_for("sendPhoto", after=mark_ru, timeout=30)
        assert runtime.history is not None
        counts = await runtime.history.counts()
    finally:
        await runtime.close()
    assert counts["replica_history.full"] >= 3 and counts["slot_history.full"] >= 3, counts
    assert call.ok, call.response
    assert str(call.params["chat_id"]) == str(VIEWER_ID)
    assert call.params["parse_mode"] == "HTML"
    chat, png, caption = fake_api.photos[-2]  # the English one
    assert chat == str(VIEWER_ID) and caption == call.params["caption"]
    assert png_size(png) == (1000, 600)
    # a healthy replica: recorded every poll, lag measured (0 or a few bytes), streaming now
    assert caption.startswith("📈 <b>main/pg2</b>: lag peaked at "), caption
    assert "not streaming" not in caption
    assert "sendMessage" not in [c.method for c in fake_api.calls[mark:english_done]]
    assert call_ru.ok, call_ru.response
    assert str(call_ru.params["caption"]).startswith("📈 <b>main/pg2</b>: пик отставания ")
    assert png_size(fake_api.photos[-1][1]) == (1000, 600)


async def test_graph_with_an_unknown_node_is_refused_in_words(
    pgset: LocalReplicationSet, fake_api: FakeBotApi
) -> None:
    base = short_tmpdir("rbg")
    config = make_config(pgset, base / "audit.sqlite3")
    LEDGER.audit_paths.append(config.audit.path)
    runtime = await open_runtime(config, redactor_for(config))
    try:
        async with ptb_serving(runtime, fake_api) as telegram:
            text = await telegram.reply_to(VIEWER_ID, "/graph pg9")
    finally:
        await runtime.close()
    assert "no cluster or node called pg9" in text
    assert fake_api.photos == []


async def test_graph_in_the_demo_console_writes_the_picture_beside_the_demo(
    pgset: LocalReplicationSet,
) -> None:
    base = short_tmpdir("rbg")
    audit = base / "audit.sqlite3"
    LEDGER.audit_paths.append(audit)
    config = parse_config(
        tomllib.loads(demo_config_text(pgset, audit)), {PASSWORD_ENV: pgset.bot_password}
    )
    lines: list[str] = []
    await _console(config, ["/status", "/graph pg2 6h"], lines.append, pgset)
    shown = [line for line in lines if line.startswith("[picture: ")]
    assert len(shown) == 1, lines
    path = Path(shown[0].removeprefix("[picture: ").split("]", 1)[0])
    assert path.parent == base / "charts"
    assert png_size(path.read_bytes()) == (1000, 600)
    assert "📈 pg2: " in shown[0] or "📈 demo/pg2: " in shown[0], shown[0]
