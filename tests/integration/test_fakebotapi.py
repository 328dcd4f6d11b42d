"""The fake Bot API server, exercised through the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, EndPointNotFound, NetworkError, RetryAfter, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

from tests.fakebotapi import NOT_MODIFIED, FakeBotApi, RecordedCall

pytestmark = pytest.mark.integration

USER = 4242


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with FakeBotApi() as api:
        yield api


@pytest.fixture
async def bot(fake: FakeBotApi) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url) as b:
        yield b


def _retry_seconds(err: RetryAfter) -> float:
    value = err.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


async def test_ping_and_callback_roundtrip_with_real_ptb(fake: FakeBotApi) -> None:
    seen_args: list[list[str]] = []

    async def ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        seen_args.append(list(context.args or []))
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("again", callback_data="again")]])
        await update.effective_message.reply_text("pong", reply_markup=keyboard)

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(f"<b>pressed</b> {query.data} &amp; done", parse_mode="HTML")

    async def post_init(app: Application) -> None:  # type: ignore[type-arg]
        await app.bot.set_my_commands([BotCommand("ping", "Ping the bot")])

    app = (
        ApplicationBuilder().token(fake.token).base_url(fake.base_url).post_init(post_init).build()
    )
    app.add_handler(CommandHandler("ping", ping))
    app.add_handler(CallbackQueryHandler(on_button))

    await app.initialize()
    if app.post_init:
        await app.post_init(app)
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0.0, timeout=1)
    try:
        # Start-up sequence as PTB 22 performs it.
        await fake.await_polling(timeout=5)  # PTB's first long poll is now waiting
        methods = [c.method for c in fake.calls]
        assert methods == ["getMe", "setMyCommands", "deleteWebhook"], methods
        assert fake.my_commands() == [{"command": "ping", "description": "Ping the bot"}]
        assert app.bot.username == "replbot_test_bot"

        # A command gets answered.
        mark = fake.mark()
        t0 = time.monotonic()
        fake.push_message(USER, "/ping now please", username="alice")
        sent = await fake.await_for("sendMessage", after=mark, timeout=5)
        assert time.monotonic() - t0 < 1.0  # long poll woke up immediately
        assert seen_args == [["now", "please"]]
        assert sent.params["chat_id"] == USER  # decoded from the form field "4242"
        assert sent.params["text"] == "pong"
        assert sent.params["reply_markup"] == {
            "inline_keyboard": [[{"text": "again", "callback_data": "again"}]]
        }
        result = sent.result
        assert result["chat"] == {
            "id": USER,
            "type": "private",
            "first_name": "Test",
            "username": "alice",
        }
        assert result["from"]["is_bot"] is True
        assert result["reply_markup"] == sent.params["reply_markup"]
        assert fake.sent_texts(USER) == ["pong"]

        # Group command addressed to the bot ("/ping@botname") also dispatches.
        mark = fake.mark()
        fake.push_message(USER, "/ping@replbot_test_bot", chat_id=-100123, chat_type="supergroup")
        group_sent = await fake.await_for("sendMessage", after=mark, timeout=5)
        assert group_sent.params["chat_id"] == -100123
        assert group_sent.result["chat"]["type"] == "supergroup"

        # Pressing the button edits the bot's message.
        mark = fake.mark()
        fake.push_callback(USER, "again", message_id=sent.result["message_id"])
        edit = await fake.await_for("editMessageText", after=mark, timeout=5)
        assert edit.ok, edit.response
        answered = await fake.await_for("answerCallbackQuery", after=mark, timeout=5)
        assert answered.result is True
        assert edit.params["message_id"] == sent.result["message_id"]
        # Telegram stores plain text + entities; the edit dropped the keyboard.
        assert edit.result["text"] == "pressed again & done"
        assert edit.result["entities"] == [{"type": "bold", "offset": 0, "length": 7}]
        stored = fake.message(USER, sent.result["message_id"])
        assert stored is not None
        assert "reply_markup" not in stored
        assert fake.sent_texts(USER) == ["pong", "<b>pressed</b> again &amp; done"]
        assert fake.sent_texts(USER, plain=True) == ["pong", "pressed again & done"]

        # The same content again is "not modified", like Telegram.
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await app.bot.edit_message_text(
                "<strong>pressed</strong> again &amp; done",
                chat_id=USER,
                message_id=sent.result["message_id"],
                parse_mode="HTML",
            )
        assert fake.calls_of("editMessageText")[-1].response["description"] == NOT_MODIFIED
    finally:
        t0 = time.monotonic()
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        elapsed = time.monotonic() - t0
    assert elapsed < 1.5, f"shutdown took {elapsed:.2f}s"
    polls = fake.calls_of("getUpdates")
    # PTB's cleanup poll (timeout 0) confirmed everything it fetched.
    assert [c.params["timeout"] for c in polls if c.params["timeout"] == 0] == [0]
    assert {c.params["timeout"] for c in polls} == {0, 1}
    assert fake.pending_updates == 0


async def test_bad_html_and_too_long_are_bad_requests(fake: FakeBotApi, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(USER, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: Unsupported start tag"):
        await bot.send_message(USER, "lag < 5 s", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(USER, "ssh & psql", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities: Unmatched end tag"):
        await bot.send_message(USER, "<b><i>x</b></i>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER, "x" * 4097)
    # The limit counts text after entity parsing: tags and escapes are free.
    ok = await bot.send_message(USER, "<b>" + "&lt;" * 4096 + "</b>", parse_mode="HTML")
    assert ok.text == "<" * 4096
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER, "<b>" + "&amp;" * 4097 + "</b>", parse_mode="HTML")
    # Supported formatting round-trips into entities PTB understands.
    msg = await bot.send_message(
        USER,
        '<pre><code class="language-sql">select 1</code></pre>\n<a href="https://x.test/?a=1&amp;b=2">'
        'link</a> <span class="tg-spoiler">s</span> <tg-spoiler>t</tg-spoiler>',
        parse_mode="HTML",
    )
    kinds = [(e.type, e.offset, e.length) for e in msg.entities]
    assert kinds == [("pre", 0, 8), ("text_link", 9, 4), ("spoiler", 14, 1), ("spoiler", 16, 1)]
    assert msg.entities[0].language == "sql"
    assert msg.entities[1].url == "https://x.test/?a=1&b=2"
    failed = [c for c in fake.calls_of("sendMessage") if not c.ok]
    assert len(failed) == 6
    assert all(c.status == 400 for c in failed)


# PTB 22.8 itself warns when it constructs RetryAfter unless PTB_TIMEDELTA=1 is set.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_fault_injection(fake: FakeBotApi, bot: Bot) -> None:
    fake.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(USER, "hello")
    assert _retry_seconds(info.value) == 7
    assert fake.calls[-1].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }

    fake.fail_next("sendMessage", times=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(USER, "hello")
    fake.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(USER, "hello")
    assert (await bot.send_message(USER, "finally")).text == "finally"
    assert fake.sent_texts() == ["finally"]

    # A slow answer looks like a timeout to the client; status=200 then still delivers.
    fake.fail_next("sendMessage", status=200, delay=0.6)
    t0 = time.monotonic()
    with pytest.raises(TimedOut):
        await bot.send_message(USER, "slow", read_timeout=0.2)
    assert time.monotonic() - t0 < 0.5
    call = await fake.await_for("sendMessage", lambda c: c.params["text"] == "slow", timeout=3)
    assert call.ok  # delivered although the client gave up: a duplicate risk on retry

    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("frobnicate", api_kwargs={"x": 1})
    assert fake.calls[-1].response == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_get_updates_long_poll_offset_and_limit(fake: FakeBotApi, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, fake.push_message, USER, "hi")
    t0 = time.monotonic()
    updates = await bot.get_updates(timeout=5)
    assert 0.1 < time.monotonic() - t0 < 1.5
    assert [u.message.text for u in updates if u.message] == ["hi"]

    first = updates[0].update_id
    for text in ("a", "b", "c"):
        fake.push_message(USER, text)
    # Without offset nothing is confirmed.
    assert len(await bot.get_updates(timeout=0)) == 4
    two = await bot.get_updates(offset=first + 1, limit=2, timeout=0)
    assert [u.message.text for u in two if u.message] == ["a", "b"]
    assert fake.pending_updates == 3
    rest = await bot.get_updates(offset=two[-1].update_id + 1, timeout=0)
    assert [u.message.text for u in rest if u.message] == ["c"]
    t0 = time.monotonic()
    assert await bot.get_updates(offset=rest[-1].update_id + 1, timeout=0.3) == ()
    assert time.monotonic() - t0 >= 0.25
    assert fake.pending_updates == 0

    # Message ids are per chat and shared between user and bot messages.
    sent = await bot.send_message(USER, "reply")
    assert sent.message_id == 5


def _raw_get_updates(fake: FakeBotApi, timeout: int, out: list[object]) -> None:
    body = json.dumps({"timeout": timeout}).encode()
    req = urllib.request.Request(
        f"{fake.base_url}{fake.token}/getUpdates",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout + 5) as resp:
            out.append(json.loads(resp.read()))
    except urllib.error.HTTPError as err:
        out.append(json.loads(err.read()))


async def test_second_poller_terminates_first_with_conflict(fake: FakeBotApi, bot: Bot) -> None:
    out: list[object] = []
    thread = threading.Thread(target=_raw_get_updates, args=(fake, 30, out))
    thread.start()
    await fake.await_polling(timeout=3)  # the first poll is blocked in the server
    assert await bot.get_updates(timeout=0) == ()
    await asyncio.to_thread(thread.join, 3)
    assert out and isinstance(out[0], dict)
    assert out[0]["error_code"] == 409
    assert "terminated by other getUpdates request" in out[0]["description"]


def test_stop_unblocks_pending_long_poll() -> None:
    fake = FakeBotApi()
    fake.start()
    out: list[object] = []
    thread = threading.Thread(target=_raw_get_updates, args=(fake, 30, out))
    thread.start()
    fake.wait_polling(timeout=3)  # the poll is now blocked in the server
    assert not out
    t0 = time.monotonic()
    fake.stop()
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert out == [{"ok": True, "result": []}]


def test_wait_for_reports_calls_seen(fake: FakeBotApi) -> None:
    out: list[object] = []
    _raw_get_updates(fake, 0, out)
    assert out == [{"ok": True, "result": []}]
    with pytest.raises(AssertionError, match=r"(?s)no matching sendMessage.*getUpdates"):
        fake.wait_for("sendMessage", timeout=0.05)
    found: RecordedCall = fake.wait_for("getUpdates", lambda c: c.params["timeout"] == 0)
    assert found.ok
