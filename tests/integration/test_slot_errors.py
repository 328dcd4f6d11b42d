"""The server's refusals of slot commands reach the chat as what they are, sent once.

psycopg classes "slot is active" (55006) and "all replication slots are in use" (53400) as
OperationalError, like a dropped connection. The adapter must tell them apart by SQLSTATE:
a refusal is translated once, only a broken connection is retried. Statements are counted
in the primary's log (log_statement = all).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.sandbox import LocalReplicationSet, PgBinaries
from tests.conftest import ADMIN_ID, OPERATOR_ID, TelegramHarness, short_tmpdir
from tests.integration._helpers import (
    plain,
    reply_call,
    scratch_set,
    server_owned_dir,
    start_as_server,
    stop_started,
    telegram_for,
    wait_until,
)

pytestmark = pytest.mark.integration


def sent_statements(rset: LocalReplicationSet, function: str) -> int:
    """How many statements calling ``function`` the primary logged as received."""
    text = rset.primary.log_file.read_text(errors="replace")
    return len(re.findall(rf"LOG:\s+(?:statement|execute [^:]*): .*{function}", text))


@pytest.fixture
def logged_set(pg_binaries: PgBinaries) -> Iterator[LocalReplicationSet]:
    """A primary (statements logged) + replica pg2."""
    with scratch_set(pg_binaries, settings={"log_statement": "all"}) as rset:
        yield rset


@pytest.fixture
async def tg(logged_set: LocalReplicationSet) -> AsyncIterator[TelegramHarness]:
    async with telegram_for(logged_set) as harness:
        yield harness


async def test_dropslot_of_a_slot_that_became_active_says_active_and_sends_the_drop_once(
    tg: TelegramHarness, logged_set: LocalReplicationSet
) -> None:
    rset = logged_set
    rset.psql("pg1", "SELECT pg_create_physical_replication_slot('keep_me', true)")
    question = await reply_call(tg, ADMIN_ID, "/dropslot keep_me")
    assert plain(question).startswith("⚠️ Drop slot keep_me on main/pg1?"), plain(question)
    confirm = question.params["reply_markup"]["inline_keyboard"][0][0]  # type: ignore[index]

    # between the question and the button, a client starts streaming through the slot
    work = short_tmpdir("rbw")
    target = server_owned_dir(work, "wal")
    conninfo = (
        f"host=127.0.0.1 port={rset.primary.port} user={rset.repl_user} "
        f"passfile={rset.passfile} application_name=holder"
    )
    receivewal = str(rset.binaries.exe("pg_receivewal"))
    proc = start_as_server(
        [receivewal, "-d", conninfo, "-D", str(target), "--slot", "keep_me", "--no-loop"]
    )
    try:
        await wait_until(
            lambda: (
                rset.psql(
                    "pg1", "SELECT active FROM pg_replication_slots WHERE slot_name = 'keep_me'"
                )
                == "t"
            ),
            "pg_receivewal to hold keep_me",
        )
        before = sent_statements(rset, "pg_drop_replication_slot")
        mark = tg.api.mark()
        tg.api.push_callback(ADMIN_ID, confirm["callback_data"], question.result["message_id"])
        reply = await tg.api.await_for(
            "sendMessage", lambda c: c.params.get("chat_id") == ADMIN_ID, after=mark
        )
        sent = sent_statements(rset, "pg_drop_replication_slot") - before
    finally:
        stop_started(proc, str(target))
        shutil.rmtree(work, ignore_errors=True)

    text = plain(reply)
    assert (text, sent) == ("❌ slot keep_me is active on pg1; stop its user first", 1)
    assert "keep_me" in rset.psql(
        "pg1", "SELECT string_agg(slot_name, ',') FROM pg_replication_slots"
    )
    rset.psql("pg1", "SELECT pg_drop_replication_slot('keep_me')")


@pytest.fixture
def full_set(pg_binaries: PgBinaries) -> Iterator[LocalReplicationSet]:
    """A lone primary with room for one slot, statements logged."""
    settings = {"log_statement": "all", "max_replication_slots": "1"}
    with scratch_set(pg_binaries, replicas=0, settings=settings) as rset:
        yield rset


async def test_createslot_beyond_max_replication_slots_says_all_slots_are_in_use(
    full_set: LocalReplicationSet,
) -> None:
    async with telegram_for(full_set) as tg:
        first = plain(await reply_call(tg, OPERATOR_ID, "/createslot first"))
        assert first == "✅ slot first created on main/pg1", first
        before = sent_statements(full_set, "pg_create_physical_replication_slot")
        second = plain(await reply_call(tg, OPERATOR_ID, "/createslot second"))
        sent = sent_statements(full_set, "pg_create_physical_replication_slot") - before

    expected = "❌ all replication slots on pg1 are in use (max_replication_slots)"
    assert (second, sent) == (expected, 1)
    assert full_set.psql("pg1", "SELECT string_agg(slot_name, ',') FROM pg_replication_slots") == (
        "first"
    )
