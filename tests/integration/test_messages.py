"""Replies as Telegram gets them: 4096-character splitting, /help per role, /whoami, the menu."""

from __future__ import annotations

import re

import pytest

from bot.app import Runtime, command_menu
from bot.models import Outcome, Role
from handlers.base import Reply, Request
from handlers.registry import COMMANDS
from handlers.render import AUDIT_FIELD_CHARS, MAX_AUDIT_LINES
from tests.conftest import ADMIN_ID, GROUP_CHAT_ID, VIEWER_ID, TelegramHarness
from tests.fakebotapi import MAX_MESSAGE_LENGTH, FakeBotApi
from tests.integration._helpers import audit_rows, plain, reply_call

pytestmark = pytest.mark.integration

FILL_REQUESTS = 150
# one argument of 200 characters with markup-significant characters, so that splitting has to
# keep entities and tags whole
JUNK = ("x&<b>'\"" * 40)[:200]


class CollectingChat:
    """A Chat for requests fed straight to the dispatcher (to fill the audit log quickly)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []

    async def send(self, reply: Reply) -> int:
        self.replies.append(reply)
        return len(self.replies)

    async def edit(self, message_id: int, reply: Reply) -> None:
        self.replies.append(reply)

    async def notify(self, text: str) -> None:
        pass


async def test_a_long_audit_reply_is_split_into_messages_telegram_accepts(
    telegram: TelegramHarness,
) -> None:
    chat = CollectingChat()
    for _ in range(FILL_REQUESTS):
        request = Request(ADMIN_ID, "alice-admin", ADMIN_ID, "private", text=f"/status {JUNK}")
        await telegram.runtime.dispatcher.handle_command(request, chat)
    assert [r.html for r in chat.replies] == ["❌ invalid cluster name"] * FILL_REQUESTS
    filled = await audit_rows(telegram, FILL_REQUESTS)
    assert {(r.command, r.args, r.outcome) for r in filled} == {("status", JUNK, Outcome.REFUSED)}

    mark = telegram.send(ADMIN_ID, "/audit 200")
    await audit_rows(telegram, FILL_REQUESTS + 1)  # the /audit row comes after its last part
    calls = [c for c in telegram.api.calls[mark:] if c.method == "sendMessage"]

    assert len(calls) >= 3, f"expected several messages, got {len(calls)}"
    for call in calls:
        assert call.ok, f"rejected: {call.status} {call.response}"
        assert call.params["chat_id"] == ADMIN_ID
        assert len(call.params["text"]) <= MAX_MESSAGE_LENGTH
    texts = [plain(c) for c in calls]
    assert texts[0].startswith(f"ℹ️ last {FILL_REQUESTS} audit entries, newest first")
    lines = [line for text in texts for line in text.splitlines()][1:]
    entries, tail = lines[:-1], lines[-1]
    shown = MAX_AUDIT_LINES
    ids = [int(m.group(1)) for line in entries if (m := re.match(r"^⚠️ #(\d+) ", line))]
    assert ids == list(range(FILL_REQUESTS, FILL_REQUESTS - shown, -1)), "entries lost by the split"
    cut = " ".join(JUNK.split())[: AUDIT_FIELD_CHARS - 1] + "…"
    # the audit keeps the refusal's language-neutral phrase key
    assert all(f"/status {cut} refused — error.input.cluster_name" in line for line in entries)
    assert tail == f"… and {FILL_REQUESTS - shown} more entries (ask for fewer with /audit N)"


async def test_help_lists_only_the_commands_of_the_callers_role(
    telegram: TelegramHarness,
) -> None:
    viewer = plain(await reply_call(telegram, VIEWER_ID, "/help"))
    admin = plain(await reply_call(telegram, ADMIN_ID, "/help"))

    assert viewer.startswith("ℹ️ commands for vera-viewer (viewer):")
    assert "/status [cluster]" in viewer
    assert "/dropslot" not in viewer
    assert "/createslot" not in viewer
    assert "/audit" not in viewer
    assert admin.startswith("ℹ️ commands for alice-admin (admin):")
    for spec in COMMANDS.values():
        assert spec.usage in admin
    assert "/dropslot NAME [cluster] — drop an inactive slot (asks to confirm)" in admin
    rows = await audit_rows(telegram, 2)
    assert [(r.user_id, r.command, r.outcome) for r in rows] == [
        (VIEWER_ID, "help", Outcome.OK),
        (ADMIN_ID, "help", Outcome.OK),
    ]


async def test_whoami_shows_the_callers_id_and_role(telegram: TelegramHarness) -> None:
    text = plain(await reply_call(telegram, VIEWER_ID, "/whoami"))
    assert text == f"ℹ️ you are vera-viewer, id {VIEWER_ID}, role viewer; chat {VIEWER_ID}"


async def test_the_command_menu_is_set_at_start_before_polling(
    telegram: TelegramHarness,
) -> None:
    await reply_call(telegram, VIEWER_ID, "/whoami")  # a getUpdates has been answered by now
    menu = telegram.api.my_commands()
    assert menu == [{"command": n, "description": d} for n, d in command_menu().items()]
    names = {c["command"] for c in menu}
    assert {"status", "slots", "check", "createslot", "dropslot", "audit", "help"} <= names
    assert "start" not in names
    methods = [c.method for c in telegram.api.calls]
    assert methods.count("setMyCommands") == 1
    assert methods.index("setMyCommands") < methods.index("deleteWebhook")
    assert methods.index("setMyCommands") < methods.index("getUpdates")


async def test_each_users_private_menu_lists_only_their_roles_commands_in_their_language(
    runtime: Runtime, fake_api: FakeBotApi
) -> None:
    """setMyCommands at start: a chat scope per configured user with their role's commands,
    the viewer-level default for groups and everyone else, and a Russian default menu for
    Russian clients."""
    from bot.app import user_menus
    from handlers.telegram import build_application

    app = build_application(
        runtime.dispatcher,
        fake_api.token,
        fake_api.base_url,
        command_menu(role=Role.VIEWER),
        localized_commands={"ru": command_menu("ru", Role.VIEWER)},
        chat_commands=user_menus(runtime.config),
    )
    await app.initialize()
    try:
        assert app.post_init is not None
        await app.post_init(app)
    finally:
        await app.shutdown()

    def names(scope: dict[str, object] | None = None, language: str = "") -> set[str]:
        return {c["command"] for c in fake_api.my_commands(scope, language)}

    viewer = names({"type": "chat", "chat_id": VIEWER_ID})
    admin = names({"type": "chat", "chat_id": ADMIN_ID})
    assert {"status", "slots", "help", "whoami", "lang"} <= viewer
    assert not {"rebuild", "dropslot", "audit", "repair"} & viewer
    assert {"rebuild", "dropslot", "audit", "repair"} <= admin
    assert names() == viewer  # the default scope: groups and unknown users
    russian = fake_api.my_commands(None, "ru")
    assert {c["command"] for c in russian} == viewer
    status = next(c["description"] for c in russian if c["command"] == "status")
    assert status == "основной сервер и реплики: состояние, LSN, отставание"


async def test_lang_refreshes_the_users_private_menu_at_once_and_a_restart_keeps_it(
    telegram: TelegramHarness,
) -> None:
    """/lang ru: setMyCommands for the caller's private chat, their role's commands in Russian,
    before the reply; the menus a restart sets come from the stored choice."""
    from bot.app import user_menus

    viewer = {"type": "chat", "chat_id": VIEWER_ID}
    admin = {"type": "chat", "chat_id": ADMIN_ID}

    def menu(scope: dict[str, object]) -> dict[str, str]:
        return {c["command"]: c["description"] for c in telegram.api.my_commands(scope)}

    reply = plain(await reply_call(telegram, VIEWER_ID, "/lang ru"))
    assert "русский" in reply
    assert menu(viewer) == command_menu("ru", Role.VIEWER)
    assert menu(viewer)["status"] == "основной сервер и реплики: состояние, LSN, отставание"
    assert not {"rebuild", "dropslot", "audit"} & set(menu(viewer))
    assert menu(admin) == {}  # nobody else's menu changes
    restart = user_menus(telegram.runtime.config, await telegram.runtime.chosen_languages())
    assert restart[VIEWER_ID] == menu(viewer)
    assert restart[ADMIN_ID] == command_menu("en", Role.ADMIN)

    await reply_call(telegram, ADMIN_ID, "/lang ru", GROUP_CHAT_ID, chat_type="group")
    assert menu(admin) == command_menu("ru", Role.ADMIN)
    assert "rebuild" in menu(admin)
    await reply_call(telegram, VIEWER_ID, "/lang en")
    assert menu(viewer) == command_menu("en", Role.VIEWER)
