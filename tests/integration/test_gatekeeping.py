"""Commands that must not run, through the real PTB client and the fake Bot API: addressed to
another bot, sent while the bot was offline, forwarded; and /audit of hostile rows."""

from __future__ import annotations

import time

import pytest

from bot.models import Outcome
from bot.sandbox import LocalReplicationSet
from handlers.base import Request
from tests.conftest import ADMIN_ID, GROUP_CHAT_ID, OPERATOR_ID, TelegramHarness
from tests.fakebotapi import BOT_USERNAME, MAX_MESSAGE_LENGTH
from tests.integration._helpers import audit_rows, plain, reply_call

pytestmark = pytest.mark.integration

FORWARDED_FROM = {"type": "hidden_user", "date": 1_700_000_000, "sender_user_name": "someone"}


def slot_names(rset: LocalReplicationSet) -> list[str]:
    out = rset.psql("pg1", "SELECT slot_name FROM pg_replication_slots ORDER BY slot_name")
    return out.split()


def sent_to(harness: TelegramHarness, chat_id: int, after: int) -> list[str]:
    return [
        str(c.params["text"])
        for c in harness.api.calls[after:]
        if c.method == "sendMessage" and c.params.get("chat_id") == chat_id
    ]


async def test_a_command_addressed_to_another_bot_gets_no_reply_and_runs_nothing(
    telegram: TelegramHarness, pgset: LocalReplicationSet
) -> None:
    mark = telegram.send(
        OPERATOR_ID, "/createslot@other_bot other_bots_slot", GROUP_CHAT_ID, chat_type="group"
    )
    telegram.send(ADMIN_ID, "/status@other_bot", GROUP_CHAT_ID, chat_type="group")
    # a command to this bot afterwards: its reply proves the earlier updates were handled
    whoami = await reply_call(telegram, ADMIN_ID, "/whoami", GROUP_CHAT_ID, chat_type="group")
    rows = await audit_rows(telegram, 3)  # rows follow replies: every reply has been sent

    assert plain(whoami).startswith("ℹ️")
    texts = sent_to(telegram, GROUP_CHAT_ID, mark)
    assert len(texts) == 1, texts  # only the /whoami reply
    assert "other_bots_slot" not in slot_names(pgset)
    ignored = [r for r in rows if r.reason == "addressed to @other_bot"]
    assert [(r.command, r.outcome) for r in ignored] == [
        ("createslot", Outcome.REFUSED),
        ("status", Outcome.REFUSED),
    ]


async def test_a_command_addressed_to_this_bot_runs(telegram: TelegramHarness) -> None:
    text = plain(await reply_call(telegram, ADMIN_ID, f"/status@{BOT_USERNAME}"))

    assert "main" in text and "pg2" in text


async def test_a_command_sent_while_the_bot_was_offline_is_not_run(
    telegram: TelegramHarness, pgset: LocalReplicationSet
) -> None:
    long_ago = int(time.time()) - 3600

    text = plain(await reply_call(telegram, OPERATOR_ID, "/createslot offline_slot", date=long_ago))

    assert text == "❌ not run: sent while the bot was offline"
    assert "offline_slot" not in slot_names(pgset)
    [row] = await audit_rows(telegram, 1)
    assert (row.command, row.args, row.outcome) == ("createslot", "offline_slot", Outcome.REFUSED)
    assert row.reason == "sent while the bot was offline"


async def test_a_forwarded_command_is_refused_and_runs_nothing(
    telegram: TelegramHarness, pgset: LocalReplicationSet
) -> None:
    text = plain(
        await reply_call(
            telegram, OPERATOR_ID, "/createslot forwarded_slot", forward_origin=FORWARDED_FROM
        )
    )

    assert text.startswith("❌ not run: forwarded commands are not accepted")
    assert "forwarded_slot" not in slot_names(pgset)
    [row] = await audit_rows(telegram, 1)
    assert (row.command, row.outcome, row.reason) == (
        "createslot",
        Outcome.REFUSED,
        "forwarded message",
    )


class _Chat:
    async def send(self, reply: object) -> int:
        return 1

    async def edit(self, message_id: int, reply: object) -> None:
        pass

    async def notify(self, text: str) -> None:
        pass


async def test_audit_of_rows_with_multi_line_hostile_content_is_valid_html_in_every_part(
    telegram: TelegramHarness,
) -> None:
    # an invalid first word: the audit row keeps everything up to the first space as the name
    hostile = "/st<" + "\n<code>&amp;</b>" * 8 + " " + ("arg\n<i>" * 60)
    for _ in range(60):
        request = Request(ADMIN_ID, "alice-admin", ADMIN_ID, "private", text=hostile)
        await telegram.runtime.dispatcher.handle_command(request, _Chat())
    await audit_rows(telegram, 60)

    mark = telegram.send(ADMIN_ID, "/audit 60")
    await audit_rows(telegram, 61)
    calls = [c for c in telegram.api.calls[mark:] if c.method == "sendMessage"]

    assert len(calls) >= 2, len(calls)
    for call in calls:
        assert call.ok, f"rejected: {call.status} {call.response}"
        assert len(call.params["text"]) <= MAX_MESSAGE_LENGTH
    shown = "\n".join(plain(c) for c in calls).splitlines()
    assert shown[0] == "ℹ️ last 60 audit entries, newest first"
    assert len(shown) == 61, "each audit row must render on one line"
