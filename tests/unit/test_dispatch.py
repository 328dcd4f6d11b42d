"""The Dispatcher end to end on fake ports: who may do what, errors, the confirmation flow."""

from __future__ import annotations

import logging
import re

import pytest

from bot.errors import NodeUnavailable
from bot.models import Outcome
from handlers.base import Reply
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import (
    ADMIN2_ID,
    ADMIN_ID,
    CONFIRM_TIMEOUT_S,
    GROUP_CHAT_ID,
    OPERATOR_ID,
    STRANGER_ID,
    VIEWER_ID,
    Bot,
    FakeChat,
    make_bot,
    make_config,
    slot,
)

SQL_METHODS = {
    "snapshot",
    "settings",
    "replication_hba_rules",
    "usage_counts",
    "create_physical_slot",
    "drop_slot",
}


def text_of(reply: Reply) -> str:
    """What the user reads; fails the test if Telegram would refuse the HTML."""
    return parse_telegram_html(reply.html)[0]


def only_reply(chat: FakeChat) -> str:
    assert len(chat.sent) == 1, chat.sent
    return text_of(chat.sent[0])


def data_of(reply: Reply, label_prefix: str) -> str:
    return next(b.data for b in reply.buttons if b.label.startswith(label_prefix))


async def ask_drop(bot: Bot, slot_name: str = "old_slot", user_id: int = ADMIN_ID) -> Reply:
    """/dropslot as ``user_id``; returns the question with its buttons."""
    chat = await bot.command(f"/dropslot {slot_name} main", user_id=user_id)
    assert len(chat.sent) == 1
    return chat.sent[0]


def slot_names(bot: Bot) -> list[str]:
    return [s.name for s in bot.pg.slot_rows["pg1"]]


# --- who may talk to the bot -------------------------------------------------------------------


async def test_unknown_user_in_private_chat_gets_one_refusal_and_is_audited() -> None:
    bot = make_bot()

    chat = await bot.command("/status", user_id=STRANGER_ID, user_name="mallory")

    assert only_reply(chat) == "❌ you are not allowed to use this bot"
    assert bot.pg.calls == []
    [row] = bot.audit.records
    assert (row.user_id, row.user_name, row.command) == (STRANGER_ID, "mallory", "status")
    assert (row.outcome, row.reason) == (Outcome.REFUSED, "unknown user")


async def test_unknown_user_in_group_chat_gets_no_reply_but_is_audited() -> None:
    bot = make_bot()

    chat = await bot.command(
        "/createslot x main", user_id=STRANGER_ID, chat_id=GROUP_CHAT_ID, chat_type="group"
    )

    assert chat.sent == [] and chat.edits == [] and chat.notes == []
    assert bot.pg.calls == []
    [row] = bot.audit.records
    assert (row.chat_id, row.command, row.args) == (GROUP_CHAT_ID, "createslot", "x main")
    assert (row.outcome, row.reason) == (Outcome.REFUSED, "unknown user")


async def test_unknown_user_pressing_a_button_is_refused_and_audited() -> None:
    bot = make_bot()
    question = await ask_drop(bot)

    chat = await bot.press(data_of(question, "Drop"), user_id=STRANGER_ID)

    assert "not allowed" in only_reply(chat)
    assert "drop_slot" not in [m for m, _ in bot.pg.calls]
    assert (bot.audit.records[-1].outcome, bot.audit.records[-1].reason) == (
        Outcome.REFUSED,
        "unknown user",
    )


async def test_chat_not_in_allowed_chat_ids_is_refused() -> None:
    bot = make_bot(make_config(allowed_chat_ids=[GROUP_CHAT_ID]))

    chat = await bot.command("/status", user_id=ADMIN_ID, chat_id=-999, chat_type="group")

    assert only_reply(chat) == "❌ this chat is not allowed to use the bot"
    assert bot.pg.calls == []
    [row] = bot.audit.records
    assert (row.outcome, row.reason) == (Outcome.REFUSED, "chat not allowed")


async def test_allowed_chat_may_use_the_bot() -> None:
    bot = make_bot(make_config(allowed_chat_ids=[GROUP_CHAT_ID]))

    chat = await bot.command("/status main", chat_id=GROUP_CHAT_ID, chat_type="supergroup")

    assert "2/2 replicas streaming" in only_reply(chat)
    assert bot.audit.records[-1].outcome is Outcome.OK


# --- roles -------------------------------------------------------------------------------------


async def test_viewer_createslot_is_refused_naming_the_role_and_runs_no_sql() -> None:
    bot = make_bot()

    chat = await bot.command("/createslot newslot main", user_id=VIEWER_ID)

    assert only_reply(chat) == "❌ /createslot needs the operator role; you are viewer"
    assert bot.pg.calls == []
    [row] = bot.audit.records
    assert row.outcome is Outcome.REFUSED
    assert "operator" in row.reason


async def test_viewer_may_run_status() -> None:
    bot = make_bot()

    chat = await bot.command("/status", user_id=VIEWER_ID)

    assert "main: 2/2 replicas streaming" in only_reply(chat)
    assert {m for m, _ in bot.pg.calls} == {"snapshot"}


async def test_operator_can_createslot() -> None:
    bot = make_bot()

    chat = await bot.command("/createslot newslot main", user_id=OPERATOR_ID)

    assert only_reply(chat) == "✅ slot newslot created on main/pg1"
    assert bot.pg.calls == [("create_physical_slot", "pg1")]
    assert "newslot" in slot_names(bot)
    [intent, row] = bot.audit.records
    assert intent.outcome is Outcome.INTENT
    assert (row.outcome, row.reason, row.args) == (
        Outcome.OK,
        "created on main/pg1",
        "newslot main",
    )


async def test_createslot_of_an_existing_slot_is_refused_by_the_server_error() -> None:
    bot = make_bot()

    chat = await bot.command("/createslot old_slot main", user_id=OPERATOR_ID)

    assert only_reply(chat) == "❌ slot old_slot already exists on pg1"
    assert bot.audit.records[-1].outcome is Outcome.REFUSED


@pytest.mark.parametrize(("user_id", "role"), [(VIEWER_ID, "viewer"), (OPERATOR_ID, "operator")])
async def test_only_admin_can_dropslot(user_id: int, role: str) -> None:
    bot = make_bot()

    chat = await bot.command("/dropslot old_slot main", user_id=user_id)

    assert only_reply(chat) == f"❌ /dropslot needs the admin role; you are {role}"
    assert chat.sent[0].buttons == ()
    assert bot.pg.calls == []
    assert bot.audit.records[-1].outcome is Outcome.REFUSED


async def test_admin_dropslot_asks_for_confirmation_before_dropping() -> None:
    bot = make_bot()

    question = await ask_drop(bot)

    assert text_of(question).startswith("⚠️ Drop slot old_slot on main/pg1?")
    assert [b.label for b in question.buttons] == ["Drop old_slot", "Cancel"]
    assert all(len(b.data.encode()) <= 64 for b in question.buttons)
    assert bot.pg.calls == [("snapshot", "pg1")]  # looked, did not drop
    assert "old_slot" in slot_names(bot)
    assert bot.audit.records[-1].reason == "confirmation requested"


async def test_help_lists_only_the_commands_of_the_callers_role() -> None:
    bot = make_bot()

    viewer_help = only_reply(await bot.command("/help", user_id=VIEWER_ID))
    admin_help = only_reply(await bot.command("/help", user_id=ADMIN_ID))

    assert "/status [cluster]" in viewer_help
    assert "/createslot" not in viewer_help
    assert "/dropslot" not in viewer_help
    assert "/dropslot NAME [cluster]" in admin_help
    assert "commands for Ann <&> O'Neil (admin)" in admin_help


# --- failures ----------------------------------------------------------------------------------


async def test_unexpected_port_exception_gives_internal_error_with_reference(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = make_bot()
    bot.pg.fail("snapshot", "pg1", RuntimeError("boom in the adapter"))

    with caplog.at_level(logging.ERROR, logger="handlers.dispatch"):
        chat = await bot.command("/status main")

    text = only_reply(chat)
    match = re.fullmatch(
        r"❌ internal error \(ref ([0-9a-f]{6})\); the details are in the bot's log", text
    )
    assert match, text
    reference = match.group(1)
    [row] = bot.audit.records
    assert (row.outcome, row.reason) == (Outcome.FAILED, f"internal error ref {reference}")
    assert f"internal error ref {reference} in /status" in caplog.text
    assert "Traceback" in caplog.text
    assert "RuntimeError: boom in the adapter" in caplog.text
    assert "boom" not in text


async def test_each_internal_error_gets_its_own_reference() -> None:
    bot = make_bot()
    bot.pg.fail("snapshot", "pg1", ValueError("bad row"))

    first = only_reply(await bot.command("/slots main"))
    second = only_reply(await bot.command("/slots main"))

    assert "internal error (ref" in first
    assert first != second


async def test_node_unavailable_gives_failed_reply_and_failed_audit_row() -> None:
    bot = make_bot()
    bot.pg.fail(
        "create_physical_slot", "pg1", NodeUnavailable("pg1", "connection refused <port 5432>")
    )

    chat = await bot.command("/createslot newslot main", user_id=OPERATOR_ID)

    assert only_reply(chat) == "❌ failed: pg1 unavailable: connection refused <port 5432>"
    [_intent, row] = bot.audit.records
    assert (row.outcome, row.reason) == (
        Outcome.FAILED,
        "error.node_unavailable node=pg1 reason=connection refused <port 5432>",
    )


async def test_node_down_in_status_is_shown_not_failed() -> None:
    bot = make_bot()
    bot.pg.fail("snapshot", "pg3", NodeUnavailable("pg3", "timeout"))
    bot.pg.walsenders["pg1"] = bot.pg.walsenders["pg1"][:1]

    text = only_reply(await bot.command("/status main"))

    assert "pg3 replica · down · slot pg3" in text
    assert "reason: timeout" in text
    assert bot.audit.records[-1].outcome is Outcome.OK


async def test_unknown_command_is_refused_and_audited() -> None:
    bot = make_bot()

    chat = await bot.command("/rebuild_everything now")

    assert only_reply(chat) == "❌ unknown command /rebuild_everything; see /help"
    assert (bot.audit.records[-1].outcome, bot.audit.records[-1].reason) == (
        Outcome.REFUSED,
        "unknown command",
    )


# --- the /dropslot confirmation flow -----------------------------------------------------------


async def test_confirmed_drop_by_the_requester_drops_the_slot() -> None:
    bot = make_bot()
    question = await ask_drop(bot)

    chat = await bot.press(data_of(question, "Drop"), message_id=7)

    assert chat.notes == ["confirmed"]
    assert [(mid, text_of(r)) for mid, r in chat.edits] == [
        (7, "✅ slot old_slot dropped on main/pg1")
    ]
    assert ("drop_slot", "pg1") in bot.pg.calls
    assert "old_slot" not in slot_names(bot)
    row = bot.audit.records[-1]
    assert (row.command, row.args, row.outcome, row.reason) == (
        "dropslot.confirm",
        "old_slot main",
        Outcome.OK,
        "dropped on main/pg1",
    )


async def test_press_by_another_user_is_refused() -> None:
    bot = make_bot()
    question = await ask_drop(bot)
    records_before = len(bot.audit.records)

    chat = await bot.press(data_of(question, "Drop"), user_id=ADMIN2_ID)

    assert only_reply(chat) == "❌ only the user who asked may press this button"
    assert chat.notes and "only the user who asked" in chat.notes[0]
    assert "old_slot" in slot_names(bot)
    assert len(bot.audit.records) == records_before + 1
    row = bot.audit.records[-1]
    assert (row.user_id, row.outcome) == (ADMIN2_ID, Outcome.REFUSED)
    assert row.reason == "error.confirm.foreign"  # language-neutral


async def test_press_after_expiry_is_refused() -> None:
    bot = make_bot()
    question = await ask_drop(bot)
    bot.clock.advance(CONFIRM_TIMEOUT_S + 1)

    chat = await bot.press(data_of(question, "Drop"))

    assert only_reply(chat) == "❌ this confirmation expired; run the command again"
    assert "old_slot" in slot_names(bot)
    assert ("drop_slot", "pg1") not in bot.pg.calls
    assert bot.audit.records[-1].outcome is Outcome.REFUSED
    assert "expired" in bot.audit.records[-1].reason


async def test_second_press_of_the_same_button_is_refused() -> None:
    bot = make_bot()
    question = await ask_drop(bot)
    await bot.press(data_of(question, "Drop"))
    bot.pg.slot_rows["pg1"].append(slot("old_slot", False))  # recreated meanwhile

    chat = await bot.press(data_of(question, "Drop"))

    assert only_reply(chat) == "❌ this button was already used (confirmed)"
    assert [c for c in bot.pg.calls if c[0] == "drop_slot"] == [("drop_slot", "pg1")]
    assert "old_slot" in slot_names(bot)
    assert bot.audit.records[-1].outcome is Outcome.REFUSED


async def test_cancel_button_cancels_and_the_drop_button_is_dead_afterwards() -> None:
    bot = make_bot()
    question = await ask_drop(bot)

    cancel = await bot.press(data_of(question, "Cancel"), message_id=3)

    assert cancel.notes == ["cancelled"]
    assert [(mid, text_of(r)) for mid, r in cancel.edits] == [(3, "ℹ️ cancelled: dropslot")]
    row = bot.audit.records[-1]
    assert (row.command, row.outcome, row.reason) == ("dropslot.cancel", Outcome.OK, "cancelled")

    late = await bot.press(data_of(question, "Drop"))

    assert only_reply(late) == "❌ this button was already used (cancelled)"
    assert ("drop_slot", "pg1") not in bot.pg.calls
    assert "old_slot" in slot_names(bot)
    assert bot.audit.records[-1].outcome is Outcome.REFUSED


async def test_forged_button_data_is_refused() -> None:
    bot = make_bot()

    chat = await bot.press("zz:whatever")

    assert only_reply(chat) == "❌ this button is not valid"
    assert bot.pg.calls == []
    assert bot.audit.records[-1].outcome is Outcome.REFUSED


async def test_every_refused_press_leaves_exactly_one_audit_row() -> None:
    """(The accepted press leaves an intent row before its outcome row.)"""
    bot = make_bot()
    question = await ask_drop(bot)
    drop = data_of(question, "Drop")
    presses = [
        (drop, ADMIN2_ID),  # foreign
        ("cf:unknown-nonce", ADMIN_ID),  # unknown
        (drop, ADMIN_ID),  # ok
        (drop, ADMIN_ID),  # replay
    ]

    for data, user_id in presses:
        before = len(bot.audit.records)
        await bot.press(data, user_id=user_id)
        added = bot.audit.records[before:]
        assert len([r for r in added if r.outcome is not Outcome.INTENT]) == 1

    outcomes = [r.outcome for r in bot.audit.records[1:]]
    assert outcomes == [
        Outcome.REFUSED,
        Outcome.REFUSED,
        Outcome.INTENT,
        Outcome.OK,
        Outcome.REFUSED,
    ]


async def test_active_slot_is_not_offered_for_drop() -> None:
    bot = make_bot()

    chat = await bot.command("/dropslot pg2 main")

    assert only_reply(chat) == ("❌ slot pg2 is active (walsender PID 201); refusing to drop it")
    assert chat.sent[0].buttons == ()
    assert ("drop_slot", "pg1") not in bot.pg.calls
    assert bot.audit.records[-1].outcome is Outcome.REFUSED


async def test_slot_that_became_active_before_the_press_is_not_dropped() -> None:
    bot = make_bot()
    question = await ask_drop(bot)
    rows = bot.pg.slot_rows["pg1"]
    rows[rows.index(next(s for s in rows if s.name == "old_slot"))] = slot("old_slot", True, 999)

    chat = await bot.press(data_of(question, "Drop"))

    assert only_reply(chat) == "❌ slot old_slot is active on pg1; stop its user first"
    assert "old_slot" in slot_names(bot)
    row = bot.audit.records[-1]
    assert (row.command, row.outcome) == ("dropslot.confirm", Outcome.REFUSED)


async def test_dropslot_of_a_missing_slot_is_refused_without_buttons() -> None:
    bot = make_bot()

    chat = await bot.command("/dropslot nosuchslot main")

    assert only_reply(chat) == "❌ slot nosuchslot does not exist on pg1"
    assert chat.sent[0].buttons == ()


@pytest.mark.parametrize("command", ["/start", "/whoami"])
async def test_an_unknown_user_learns_their_id_from_start_and_whoami_in_private(
    command: str,
) -> None:
    """A new team member asks the bot for their numeric id; nothing else runs, it is audited,
    and a second ask within the window gets no reply (the same rate limit as refusals)."""
    bot = make_bot()

    chat = await bot.command(command, user_id=STRANGER_ID, user_name="newbie")

    text = only_reply(chat)
    assert f"your Telegram id is {STRANGER_ID}" in text and "ask an admin to add you" in text
    assert bot.pg.calls == []
    [row] = bot.audit.records
    assert (row.command, row.outcome) == (command[1:], Outcome.REFUSED)
    assert row.reason == "unknown user; told their id"
    again = await bot.command(command, user_id=STRANGER_ID, user_name="newbie")
    assert again.sent == []


async def test_an_unknown_users_whoami_in_a_group_gets_no_reply() -> None:
    bot = make_bot()

    chat = await bot.command(
        "/whoami", user_id=STRANGER_ID, chat_id=GROUP_CHAT_ID, chat_type="group"
    )

    assert chat.sent == []
    [row] = bot.audit.records
    assert (row.outcome, row.reason) == (Outcome.REFUSED, "unknown user")
