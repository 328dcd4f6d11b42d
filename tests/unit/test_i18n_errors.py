"""A Russian-speaking team types bad input: every refusal a service or a handler raises is
worded in Russian (valid Telegram HTML, no English sentence), and the audit rows keep the same
language-neutral reason whatever the reply's language."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.models import Outcome
from bot.services.monitor.alerts import AlertService
from handlers.alerts import AlertRenderer
from handlers.base import Reply
from tests.unit.fakes import ADMIN2_ID, ADMIN_ID, Bot, FakeChat
from tests.unit.test_i18n_tour import english_runs, russian_bot, shown

# (what is typed, a word the Russian refusal must contain)
BAD_COMMANDS = [
    ("/rebuild nosuchnode", "неизвестный узел"),
    ("/status nosuchcluster", "неизвестный кластер"),
    ("/slots nosuchcluster", "неизвестный кластер"),
    ("/createslot Bad-Name main", "недопустимое имя слота"),
    ("/dropslot missing_slot main", "нет на"),
    ("/dropslot old_slot", "укажите один из"),
    ("/status a b", "слишком много аргументов"),
    ("/whoami me", "нет аргументов"),
    ("/audit 0", "использование"),
    ("/createslot", "использование"),
    ("/mute main", "использование"),
    ("/mute main soon", "не длительность"),
    ("/mute main 5s", "заглушить можно"),
    ("/unmute", "использование"),
    ("/mute nosuchnode 1h", "не кластер"),
    ("/lang de", "использование"),
    ("/graph main", "графиков нет"),
]


async def with_alerts(bot: Bot, tmp_path: Path) -> AlertService:
    """The bot with an alert service over a real (empty) store."""
    store = SqliteAlertStore(tmp_path / "alerts.sqlite3")
    await store.open()
    service = AlertService(bot.config, store, AlertRenderer(3600.0), bot.clock)
    await service.load()
    bot.dispatcher.services = dataclasses.replace(bot.dispatcher.services, alerts=service)
    return service


def refusal(chat: FakeChat) -> str:
    """The one refusal reply, checked to be valid Telegram HTML."""
    replies: list[Reply] = shown(chat)
    assert len(replies) == 1, [r.html for r in replies]
    assert replies[0].html.startswith("❌"), replies[0].html
    return replies[0].html


def assert_russian(texts: list[str]) -> None:
    leaks = {text: english_runs(text) for text in texts if english_runs(text)}
    assert not leaks, leaks


async def test_bad_commands_are_refused_in_russian(tmp_path: Path) -> None:
    bot = russian_bot()
    await with_alerts(bot, tmp_path)
    texts = []
    for command, expected in BAD_COMMANDS:
        text = refusal(await bot.command(command))
        assert expected in text, (command, text)
        texts.append(text)
        row = bot.audit.records[-1]
        assert row.outcome is Outcome.REFUSED and row.reason.startswith("error."), (command, row)
    assert_russian(texts)


async def test_buttons_that_cannot_be_pressed_are_refused_in_russian(tmp_path: Path) -> None:
    bot = russian_bot()
    await with_alerts(bot, tmp_path)
    texts: list[str] = []

    question = (await bot.command("/dropslot old_slot main")).sent[0]
    late = next(b.data for b in question.buttons if b.data.startswith("cf:"))
    bot.clock.advance(bot.config.telegram.confirm_timeout_s + 1)
    expired = await bot.press(late)
    texts += [refusal(expired), *expired.notes]
    assert "срок подтверждения истёк" in texts[-2]

    question = (await bot.command("/dropslot old_slot main")).sent[0]
    drop = next(b.data for b in question.buttons if b.data.startswith("cf:"))
    foreign = await bot.press(drop, user_id=ADMIN2_ID)
    texts += [refusal(foreign), *foreign.notes]
    assert "только тот, кто сделал запрос" in texts[-2]

    await bot.press(drop)  # the owner confirms: the slot is dropped
    used = await bot.press(drop)
    texts += [refusal(used), *used.notes]
    assert "уже использована (подтверждено)" in texts[-2]

    gone = await bot.command("/dropslot old_slot main")
    texts.append(refusal(gone))
    assert "слота old_slot нет на pg1" in texts[-1]

    for data, expected in [
        ("cf:never-issued", "больше не действует"),
        ("zz:whatever", "недействительна"),
        ("al:ack:999", "оповещения #999 нет"),
        ("al:frob:1", "недействительна"),
    ]:
        chat = await bot.press(data)
        text = refusal(chat)
        assert expected in text, (data, text)
        texts += [text, *chat.notes]
    assert_russian(texts)


async def test_a_refusal_reads_the_same_in_english_as_before() -> None:
    bot = russian_bot()
    chat = await bot.command("/lang en", user_id=ADMIN_ID)
    assert chat.sent
    assert refusal(await bot.command("/createslot Bad-Name main")) == (
        "❌ invalid slot name: use 1–63 lower-case letters, digits or underscores"
    )
    assert refusal(await bot.command("/dropslot missing_slot main")) == (
        "❌ slot missing_slot does not exist on pg1"
    )


async def test_audit_rows_do_not_depend_on_the_reply_language() -> None:
    """The same bad input typed by a Russian and an English reader leaves the same reason."""
    reasons = {}
    for language in ("ru", "en"):
        bot = russian_bot()
        await bot.command(f"/lang {language}")
        for command, _ in BAD_COMMANDS[:10]:
            await bot.command(command)
        rows = [r for r in bot.audit.records if r.command != "lang"]
        reasons[language] = [(r.command, r.outcome, r.reason) for r in rows]
    assert reasons["ru"] == reasons["en"]
    assert all(reason.isascii() for _, _, reason in reasons["ru"])
    assert ("dropslot", Outcome.REFUSED, "error.slot.not_found node=pg1 slot=missing_slot") in (
        reasons["ru"]
    )
