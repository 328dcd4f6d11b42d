"""/lang refreshes the caller's private-chat command menu (their role's commands, in the new
language) through the Chat port; a menu that cannot be set does not undo the choice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.app import command_menu
from bot.models import Role
from handlers.base import Request
from tests.unit.fakes import ADMIN_ID, OPERATOR_ID, FakeChat
from tests.unit.test_i18n_tour import russian_bot


@dataclass
class MenulessChat(FakeChat):
    """A chat whose transport refuses setMyCommands."""

    async def set_user_menu(self, user_id: int, commands: Mapping[str, str]) -> None:
        raise RuntimeError("Bad Request: chat not found")


async def test_lang_sets_the_callers_private_menu_for_their_role_in_the_chosen_language() -> None:
    bot = russian_bot()
    chat = await bot.command("/lang en", user_id=OPERATOR_ID)
    assert chat.menus == [(OPERATOR_ID, command_menu("en", Role.OPERATOR))]
    assert "rebuild" in chat.menus[0][1] and "audit" not in chat.menus[0][1]
    # in a group: still the caller's private chat (whose scope is their user id)
    chat = await bot.command("/lang ru", user_id=ADMIN_ID, chat_id=-100, chat_type="group")
    assert chat.menus == [(ADMIN_ID, command_menu("ru", Role.ADMIN))]
    assert (await bot.command("/lang", user_id=ADMIN_ID)).menus == []  # only shows it


async def test_a_menu_the_transport_refuses_leaves_the_choice_stored_and_answered() -> None:
    bot = russian_bot()
    chat = MenulessChat()
    request = Request(OPERATOR_ID, "oscar", OPERATOR_ID, "private", text="/lang en")
    await bot.dispatcher.handle_command(request, chat)
    assert "English" in chat.sent[0].html
    assert await bot.dispatcher.language_for(request) == "en"
