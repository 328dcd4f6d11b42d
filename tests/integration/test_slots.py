"""/slots, /createslot and /dropslot (with its confirmation buttons) end to end.

The tests create and drop slots, so they share a set of their own (one per major, not the
session's ``pgset``); each test starts with only pg2's slot and leaves only pg2's slot.
The primary logs its connections, which proves that a refused command ran no SQL at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.models import Outcome
from bot.sandbox import LocalReplicationSet, PgBinaries
from tests.conftest import (
    ADMIN_ID,
    GROUP_CHAT_ID,
    OPERATOR_ID,
    STRANGER_ID,
    VIEWER_ID,
    TelegramHarness,
)
from tests.integration._helpers import (
    audit_rows,
    plain,
    reply_call,
    scratch_set,
    telegram_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slot_set(pg_binaries: PgBinaries) -> Iterator[LocalReplicationSet]:
    """Primary + streaming replica pg2, connections logged on every node."""
    with scratch_set(pg_binaries, settings={"log_connections": "on"}) as rset:
        yield rset


@pytest.fixture
async def tg(slot_set: LocalReplicationSet) -> AsyncIterator[TelegramHarness]:
    """The bot over ``slot_set``; other slots than pg2 are dropped afterwards."""
    assert slot_names(slot_set) == ["pg2"]
    async with telegram_for(slot_set) as harness:
        yield harness
    slot_set.psql(
        "pg1",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name <> 'pg2' AND NOT active",
    )


def slot_names(rset: LocalReplicationSet) -> list[str]:
    out = rset.psql("pg1", "SELECT slot_name FROM pg_replication_slots ORDER BY slot_name")
    return out.splitlines()


def bot_connections(rset: LocalReplicationSet) -> int:
    """How many times the bot's role connected to the primary so far."""
    log = rset.primary.log_file.read_text(errors="replace")
    return log.count(f"connection authorized: user={rset.bot_user} ")


def make_hoard(rset: LocalReplicationSet) -> None:
    """An inactive slot that reserved WAL, then WAL written past it."""
    rset.psql("pg1", "SELECT pg_create_physical_replication_slot('hoard', true)")
    rset.psql(
        "pg1",
        "CREATE TABLE IF NOT EXISTS filler (x int);"
        "INSERT INTO filler SELECT generate_series(1, 20000);"
        "SELECT pg_switch_wal();",
    )


def outcomes(rows: list) -> list[tuple[int | None, str, Outcome]]:  # type: ignore[type-arg]
    return [(r.user_id, r.command, r.outcome) for r in rows]


async def test_slots_lists_the_replicas_slot_as_active(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    text = plain(await reply_call(tg, VIEWER_ID, "/slots"))
    assert re.search(r"^✅ main slots on pg1: 1 slot, 0 need attention$", text, re.M), text
    assert re.search(r"^✅ pg2 physical · active · restart \S+ · .* · for pg2", text, re.M), text
    rows = await audit_rows(tg, 1)
    assert outcomes(rows) == [(VIEWER_ID, "slots", Outcome.OK)]


async def test_createslot_by_an_operator_creates_it_and_a_second_time_says_already_exists(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    first = plain(await reply_call(tg, OPERATOR_ID, "/createslot spare_slot"))
    assert first == "✅ slot spare_slot created on main/pg1"
    assert slot_names(slot_set) == ["pg2", "spare_slot"]

    second = plain(await reply_call(tg, OPERATOR_ID, "/createslot spare_slot"))
    assert second.startswith("❌ ")
    assert "already exists" in second
    assert slot_names(slot_set) == ["pg2", "spare_slot"]

    rows = await audit_rows(tg, 4)
    assert outcomes(rows) == [
        (OPERATOR_ID, "createslot", Outcome.INTENT),
        (OPERATOR_ID, "createslot", Outcome.OK),
        (OPERATOR_ID, "createslot", Outcome.INTENT),
        (OPERATOR_ID, "createslot", Outcome.REFUSED),
    ]
    assert rows[1].args == "spare_slot"
    assert rows[3].reason.startswith("error.slot.exists ")


async def test_createslot_with_an_invalid_name_is_refused_before_any_sql(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    connections = bot_connections(slot_set)
    text = plain(await reply_call(tg, OPERATOR_ID, "/createslot Bad-Name"))
    assert text.startswith("❌ invalid slot name")
    rows = await audit_rows(tg, 2)
    assert bot_connections(slot_set) == connections, "the bot connected to the primary"
    assert slot_names(slot_set) == ["pg2"]
    assert outcomes(rows) == [
        (OPERATOR_ID, "createslot", Outcome.INTENT),  # written before the handler parses
        (OPERATOR_ID, "createslot", Outcome.REFUSED),
    ]
    assert rows[1].args == "Bad-Name"

    # the connection count does move when the bot does run SQL
    plain(await reply_call(tg, OPERATOR_ID, "/createslot good_name"))
    assert bot_connections(slot_set) > connections


async def test_slots_shows_an_inactive_slot_holding_wal_as_inactive_with_retained_bytes(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    make_hoard(slot_set)
    held = int(
        slot_set.psql(
            "pg1",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = 'hoard'",
        )
    )
    assert held > 0

    text = plain(await reply_call(tg, VIEWER_ID, "/slots"))
    assert re.search(r"^⚠️ main slots on pg1: 2 slots, 1 needs attention$", text, re.M), text
    line = re.search(r"^.*\bhoard physical · INACTIVE · .*$", text, re.M)
    assert line, text
    retained = re.search(r"retains (\d+(?:\.\d)?) (B|kB|MB|GB)", line.group(0))
    assert retained, line.group(0)
    assert float(retained.group(1)) > 0
    assert "for " not in line.group(0)


async def test_dropslot_asks_the_requester_to_confirm_and_only_the_requester_can_once(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    make_hoard(slot_set)
    group = {"chat_id": GROUP_CHAT_ID, "chat_type": "group"}

    question = await reply_call(tg, ADMIN_ID, "/dropslot hoard", **group)
    assert plain(question).startswith("⚠️ Drop slot hoard on main/pg1?")
    markup = question.params.get("reply_markup")
    assert isinstance(markup, dict), question.params
    buttons = [b for row in markup["inline_keyboard"] for b in row]
    assert len(buttons) == 2, buttons
    confirm, cancel = buttons
    assert confirm["text"] == "Drop hoard" and confirm["callback_data"].startswith("cf:")
    assert cancel["text"] == "Cancel" and cancel["callback_data"].startswith("cx:")
    message_id = question.result["message_id"]

    # another user (an operator, not an admin, not the requester) presses "Drop"
    mark = tg.api.mark()
    tg.api.push_callback(OPERATOR_ID, confirm["callback_data"], message_id, GROUP_CHAT_ID)
    refusal = await tg.api.await_for(
        "sendMessage", lambda c: c.params.get("chat_id") == GROUP_CHAT_ID, after=mark
    )
    assert plain(refusal) == "❌ only the user who asked may press this button"
    await audit_rows(tg, 2)
    assert "hoard" in slot_names(slot_set)

    # the requester presses it: dropped, and the question is edited in place
    mark = tg.api.mark()
    tg.api.push_callback(ADMIN_ID, confirm["callback_data"], message_id, GROUP_CHAT_ID)
    edit = await tg.api.await_for(
        "editMessageText", lambda c: c.params.get("message_id") == message_id, after=mark
    )
    assert plain(edit) == "✅ slot hoard dropped on main/pg1"
    assert slot_names(slot_set) == ["pg2"]
    stored = tg.api.message(GROUP_CHAT_ID, message_id)
    assert stored is not None and "reply_markup" not in stored
    await audit_rows(tg, 4)

    # pressing it again is refused
    mark = tg.api.mark()
    tg.api.push_callback(ADMIN_ID, confirm["callback_data"], message_id, GROUP_CHAT_ID)
    again = await tg.api.await_for(
        "sendMessage", lambda c: c.params.get("chat_id") == GROUP_CHAT_ID, after=mark
    )
    assert plain(again).startswith("❌ this button was already used")

    rows = await audit_rows(tg, 5)
    assert outcomes(rows) == [
        (ADMIN_ID, "dropslot", Outcome.OK),
        (OPERATOR_ID, "button", Outcome.REFUSED),
        (ADMIN_ID, "dropslot.confirm", Outcome.INTENT),
        (ADMIN_ID, "dropslot.confirm", Outcome.OK),
        (ADMIN_ID, "button", Outcome.REFUSED),
    ]
    assert rows[0].reason == "confirmation requested"
    assert rows[3].reason == "dropped on main/pg1"
    assert rows[4].reason.startswith("error.confirm.used_")
    assert all(r.chat_id == GROUP_CHAT_ID for r in rows)


async def test_dropslot_of_the_active_replica_slot_is_refused(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    call = await reply_call(tg, ADMIN_ID, "/dropslot pg2")
    text = plain(call)
    assert text.startswith("❌ slot pg2 is active")
    assert "reply_markup" not in call.params
    assert slot_names(slot_set) == ["pg2"]
    rows = await audit_rows(tg, 1)
    assert outcomes(rows) == [(ADMIN_ID, "dropslot", Outcome.REFUSED)]
    assert rows[0].reason.startswith("error.slot.active")


async def test_dropslot_by_a_viewer_is_refused_naming_the_roles(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    make_hoard(slot_set)
    call = await reply_call(tg, VIEWER_ID, "/dropslot hoard")
    assert plain(call) == "❌ /dropslot needs the admin role; you are viewer"
    assert "reply_markup" not in call.params
    assert "hoard" in slot_names(slot_set)
    rows = await audit_rows(tg, 1)
    assert outcomes(rows) == [(VIEWER_ID, "dropslot", Outcome.REFUSED)]


async def test_an_unknown_user_gets_one_refusal_in_private_and_silence_in_a_group(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    make_hoard(slot_set)
    start = tg.api.mark()
    text = plain(await reply_call(tg, STRANGER_ID, "/dropslot hoard"))
    assert text == "❌ you are not allowed to use this bot"
    await audit_rows(tg, 1)

    group_mark = tg.api.mark()
    # another stranger: one per minute is all a stranger gets (tests/unit/test_gatekeeping.py)
    tg.send(STRANGER_ID + 1, "/slots", GROUP_CHAT_ID, chat_type="group")
    rows = await audit_rows(tg, 2)  # written after the reply the bot did not send
    to_stranger = [
        c
        for c in tg.api.calls[start:]
        if c.method == "sendMessage" and c.params.get("chat_id") == STRANGER_ID
    ]
    assert len(to_stranger) == 1
    to_group = [
        c
        for c in tg.api.calls[group_mark:]
        if c.method == "sendMessage" and c.params.get("chat_id") == GROUP_CHAT_ID
    ]
    assert to_group == []
    assert "hoard" in slot_names(slot_set)
    assert outcomes(rows) == [
        (STRANGER_ID, "dropslot", Outcome.REFUSED),
        (STRANGER_ID + 1, "slots", Outcome.REFUSED),
    ]
    assert [r.reason for r in rows] == ["unknown user", "unknown user"]
    assert [r.chat_id for r in rows] == [STRANGER_ID, GROUP_CHAT_ID]


async def test_dropslot_cancel_keeps_the_slot(
    tg: TelegramHarness, slot_set: LocalReplicationSet
) -> None:
    make_hoard(slot_set)
    question = await reply_call(tg, ADMIN_ID, "/dropslot hoard")
    cancel = question.params["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
    message_id = question.result["message_id"]
    mark = tg.api.mark()
    tg.api.push_callback(ADMIN_ID, cancel, message_id)
    edit = await tg.api.await_for(
        "editMessageText", lambda c: c.params.get("message_id") == message_id, after=mark
    )
    assert plain(edit) == "ℹ️ cancelled: dropslot"
    assert "hoard" in slot_names(slot_set)
    rows = await audit_rows(tg, 2)
    assert outcomes(rows) == [
        (ADMIN_ID, "dropslot", Outcome.OK),
        (ADMIN_ID, "dropslot.cancel", Outcome.OK),
    ]
