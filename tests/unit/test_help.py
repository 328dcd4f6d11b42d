"""/help groups the commands by what they do and gives, per command, the role it needs and one
example that works at that role; each user sees only their role's commands, in English and
Russian, in messages Telegram accepts."""

from __future__ import annotations

import re

import pytest

from bot.models import Role
from handlers.registry import COMMANDS
from handlers.render import TELEGRAM_LIMIT, split_message
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import ADMIN_ID, OPERATOR_ID, VIEWER_ID, make_bot
from tests.unit.test_i18n import assert_telegram_html
from tests.unit.test_i18n_tour import english_runs, russian_bot

HEADINGS = {
    "en": {
        "watch": "Watch replication",
        "slots": "Replication slots",
        "repair": "Repair and rebuild",
        "alerts": "Alerts",
        "admin": "Administration and audit",
        "you": "You and this bot",
    },
    "ru": {
        "watch": "Наблюдение за репликацией",
        "slots": "Слоты репликации",
        "repair": "Восстановление и пересоздание",
        "alerts": "Оповещения",
        "admin": "Администрирование и аудит",
        "you": "Вы и бот",
    },
}
ROLE_WORD = {"en": "role", "ru": "роль"}
EXAMPLE_WORD = {"en": "example", "ru": "пример"}
USERS = {ADMIN_ID: Role.ADMIN, OPERATOR_ID: Role.OPERATOR, VIEWER_ID: Role.VIEWER}


def test_every_command_declares_a_purpose_and_an_example_that_works_at_its_role() -> None:
    for spec in COMMANDS.values():
        assert spec.example.startswith(f"/{spec.name}"), spec.name
        args = spec.example.split()[1:]
        assert spec.min_role_for(args)[0] == spec.min_role, spec.example
        if spec.role_with is not None:  # more than min_role for some arguments: say so
            assert spec.role_note, spec.name
    assert {spec.purpose.value for spec in COMMANDS.values()} == set(HEADINGS["en"])


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("user_id", list(USERS))
async def test_help_groups_the_callers_commands_with_role_and_example(
    language: str, user_id: int
) -> None:
    bot = russian_bot() if language == "ru" else make_bot()
    chat = await bot.command("/help", user_id=user_id)
    (reply,) = chat.sent
    html = reply.html
    for part in split_message(html):
        assert len(part) <= TELEGRAM_LIMIT
        assert_telegram_html(part)
        parse_telegram_html(part)
    role = USERS[user_id]
    visible = [s for s in COMMANDS.values() if role >= s.min_role]
    hidden = [s for s in COMMANDS.values() if role < s.min_role]
    shown_headings = [h for h in HEADINGS[language].values() if f"<b>{h}</b>" in html]
    assert shown_headings == [
        HEADINGS[language][p]
        for p in HEADINGS[language]
        if any(s.purpose.value == p for s in visible)
    ]
    blocks = re.split(r"\n(?=• )", html)
    for spec in visible:
        (block,) = [b for b in blocks if b.startswith(f"• <code>{spec.usage}</code>")]
        assert f"{ROLE_WORD[language]} <i>{spec.min_role.label}</i>" in block, block
        assert f"{EXAMPLE_WORD[language]} <code>{spec.example}</code>" in block, block
    for spec in hidden:
        assert f"<code>/{spec.name}" not in html, spec.name
    # the groups come in a fixed order, and each command sits under its own group's heading
    for spec in visible:
        heading = HEADINGS[language][spec.purpose.value]
        before = html[: html.index(f"• <code>{spec.usage}</code>")]
        assert before.rindex("<b>") == before.rindex(f"<b>{heading}</b>"), spec.name
    if language == "ru":
        assert not english_runs(html), english_runs(html)


async def test_an_operator_learns_who_may_run_a_rebuild_beyond_the_dry_run() -> None:
    help_text = (await russian_bot().command("/help", user_id=OPERATOR_ID)).sent[0].html
    assert (
        "роль <i>operator</i> (запуск, отмена и откат — admin) · "
        "пример <code>/rebuild pg2 --dry-run</code>"
    ) in help_text
