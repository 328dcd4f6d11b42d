"""A Russian-speaking team's chat, end to end through the real Dispatcher on fakes: the
language is chosen per reply (/lang, users[].language, the Telegram client, telegram.language),
persisted, and a tour of the commands in Russian shows no English sentence."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bot.adapters.prefs_sqlite import SqliteLanguageStore
from bot.config import parse_config
from bot.models import Outcome
from handlers.base import Reply, Request
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import (
    ADMIN_ID,
    PASSWORD,
    PASSWORD_ENV,
    VIEWER_ID,
    Bot,
    FakeChat,
    config_toml,
    make_bot,
)
from tests.unit.test_i18n import assert_telegram_html

# Words that stay as PostgreSQL (or the config) spells them, and names from the test config.
TECHNICAL = {
    "wal_status",
    "pg_basebackup",
    "lsn",
    "wal",
    "postgresql",
    "sent",
    "write",
    "flush",
    "replay",
    "physical",
    "logical",
    "sync",
    "async",
    "streaming",
    "ok",
    "id",
    "ru",
    "en",
    "admin",
    "operator",
    "viewer",
    "main",
    "dr",
    "pg1",
    "pg2",
    "pg3",
    "dr1",
    "dr2",
    "alice",
    "bob",
    "oscar",
    "vera",
    "old_slot",
    "telegram",
    "name",
    "english",
    "restart",
    "safe_wal_size",
    "max_wal_size",
    "reserved",
    "extended",
    "unreserved",
    "lost",
    "kb",
    "mb",
    "gb",
    "b",
    "tb",
    "n",
    "dsn",
}


class MemoryLanguages:
    """The LanguageStore port in memory."""

    def __init__(self) -> None:
        self.chosen: dict[int, str] = {}

    async def get(self, user_id: int) -> str | None:
        return self.chosen.get(user_id)

    async def set(self, user_id: int, language: str) -> None:
        self.chosen[user_id] = language


def russian_bot(extra_telegram: str = 'language = "ru"\n') -> Bot:
    text = config_toml().replace("[telegram]\n", "[telegram]\n" + extra_telegram, 1)
    bot = make_bot(parse_config(tomllib.loads(text), {PASSWORD_ENV: PASSWORD}))
    import dataclasses

    bot.dispatcher.services = dataclasses.replace(
        bot.dispatcher.services, languages=MemoryLanguages()
    )
    return bot


def english_runs(html_text: str) -> list[str]:
    """Runs of 3+ ASCII words outside <code>/<pre> and outside the technical words."""
    text = re.sub(r"<(code|pre)>.*?</\1>", " ", html_text, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"/\w+", " ", text)  # commands
    runs, current = [], []
    for token in re.findall(r"[A-Za-z_][\w.'-]*|[^\sA-Za-z_]+", text):
        if re.fullmatch(r"[A-Za-z_][\w.'-]*", token) and token.lower() not in TECHNICAL:
            current.append(token)
            continue
        if re.fullmatch(r"[^\w]+", token) and token.strip() in {"", "-"}:
            continue
        if len(current) >= 3:
            runs.append(" ".join(current))
        current = []
    if len(current) >= 3:
        runs.append(" ".join(current))
    return runs


def shown(chat: FakeChat) -> list[Reply]:
    for reply in chat.replies:
        assert_telegram_html(reply.html)
        parse_telegram_html(reply.html)
    return chat.replies


async def test_a_command_tour_in_russian_contains_no_english_sentence() -> None:
    bot = russian_bot()
    texts: list[str] = []
    for command in (
        "/help",
        "/start",
        "/whoami",
        "/status",
        "/status main",
        "/slots",
        "/alerts",
        "/lang",
        "/nosuchcommand",
        "/audit 5",
    ):
        chat = await bot.command(command)
        replies = shown(chat)
        assert replies, command
        texts.extend(r.html for r in replies)
        texts.extend(b.label for r in replies for b in r.buttons)
        texts.extend(chat.notes)
    leaks = {text: english_runs(text) for text in texts if english_runs(text)}
    assert not leaks, leaks
    joined = "\n".join(texts)
    assert "доступные вам команды" in joined or "команды для" in joined
    assert "поток получают" in joined


async def test_the_drop_confirmation_and_its_buttons_are_russian() -> None:
    bot = russian_bot()
    chat = await bot.command("/dropslot old_slot main")
    replies = shown(chat)
    labels = [b.label for r in replies for b in r.buttons]
    assert len(labels) == 2
    cancel = next(b.data for r in replies for b in r.buttons if b.data.startswith("cx:"))
    pressed = await bot.press(cancel)
    texts = [r.html for r in replies + shown(pressed)] + labels + pressed.notes
    assert "Отмена" in labels and "отменено" in pressed.notes
    leaks = {text: english_runs(text) for text in texts if english_runs(text)}
    assert not leaks, leaks


@pytest.mark.parametrize(
    ("telegram_keys", "user_language", "client", "expected"),
    [
        ("", None, None, "en"),
        ('language = "ru"\n', None, None, "ru"),
        ("", None, "ru-RU", "ru"),
        ('language = "ru"\n', None, "en-GB", "en"),
        ("", "ru", "en", "ru"),
    ],
)
async def test_the_reply_language_is_the_closest_setting(
    telegram_keys: str, user_language: str | None, client: str | None, expected: str
) -> None:
    """users[].language before the Telegram client's language_code before telegram.language."""
    text = config_toml().replace("[telegram]\n", "[telegram]\n" + telegram_keys, 1)
    if user_language:
        text = text.replace('role = "viewer"\n', f'role = "viewer"\nlanguage = "{user_language}"\n')
    bot = make_bot(parse_config(tomllib.loads(text), {PASSWORD_ENV: PASSWORD}))
    request = Request(VIEWER_ID, "vera", VIEWER_ID, "private", "/whoami", language_code=client)
    assert await bot.dispatcher.language_for(request) == expected


async def test_lang_is_remembered_and_wins_over_every_setting() -> None:
    bot = russian_bot()
    chat = await bot.command("/lang en", user_id=VIEWER_ID)
    assert "from now on your replies are in English" in shown(chat)[0].html
    chat = await bot.command("/whoami", user_id=VIEWER_ID)
    assert "you are vera-viewer" in shown(chat)[0].html
    chat = await bot.command("/whoami", user_id=ADMIN_ID)  # the others keep Russian
    assert "вы alice" in shown(chat)[0].html or "вы " in shown(chat)[0].html
    chat = await bot.command("/lang ru", user_id=VIEWER_ID)
    assert "теперь ваши ответы на языке: русский" in shown(chat)[0].html
    rows = [r for r in bot.audit.records if r.command == "lang" and r.outcome is not Outcome.INTENT]
    assert [r.args for r in rows] == ["en", "ru"] and all(r.outcome is Outcome.OK for r in rows)


async def test_lang_refuses_an_unknown_language_and_stores_nothing() -> None:
    bot = russian_bot()
    chat = await bot.command("/lang de", user_id=VIEWER_ID)
    assert "использование: /lang ru или /lang en" in shown(chat)[0].html
    store = bot.dispatcher.services.languages
    assert isinstance(store, MemoryLanguages) and store.chosen == {}


async def test_the_language_choice_survives_a_restart_in_sqlite(tmp_path: Path) -> None:
    """Migration 4's table: the choice is read back by a new store on the same file."""
    path = tmp_path / "store.sqlite3"
    store = SqliteLanguageStore(path)
    await store.open()
    await store.set(VIEWER_ID, "ru")
    await store.set(VIEWER_ID, "en")
    await store.set(ADMIN_ID, "ru")
    await store.close()
    again = SqliteLanguageStore(path)
    await again.open()
    try:
        assert await again.get(VIEWER_ID) == "en"
        assert await again.get(ADMIN_ID) == "ru"
        assert await again.get(12345) is None
    finally:
        await again.close()
