"""A rebuilt replica keeps its identity on the primary: the application_name it streamed
under before (or the one the config names), its sync_state, and so what /status and the
monitor say about it.

``pg_basebackup -R`` writes the connection options it was given into ``primary_conninfo``;
a backup run as ``application_name=pg_basebackup`` made the new replica stream under that
name for ever (/status: "absent" plus "base backup running", a "not streaming" alert that
never resolved, and a ``synchronous_standby_names`` entry that no longer matched).
Everything goes through the real PTB client, real PostgreSQL and a real sshd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from bot.adapters.telegram_notifier import TelegramNotifier
from bot.app import Runtime
from bot.models import RebuildState
from bot.sandbox import PgBinaries
from tests.conftest import ADMIN_ID, GROUP_CHAT_ID, VIEWER_ID, TelegramHarness
from tests.integration._helpers import reply_call, wait_until
from tests.integration.rebuild_bed import (
    CLUSTER,
    PRIMARY,
    REPLICA,
    RebuildBed,
    ask_and_confirm,
    audit_of,
    chat_for,
    next_message,
    opened,
    press,
    probe,
    rebuild_bed,
    text_of,
)

pytestmark = pytest.mark.integration

MONITOR = """
[monitor]
interval = "0.2s"
timeout = "2s"
send_timeout = "0.5s"
send_retry_initial = "0.1s"
send_retry_max = "0.3s"
"""


@pytest.fixture
async def bed(pg_binaries: PgBinaries) -> AsyncIterator[RebuildBed]:
    with rebuild_bed(pg_binaries) as started:
        yield started


async def rebuild_in_chat(chat: TelegramHarness) -> None:
    """``/rebuild pg2``, confirmed by the admin; waits for the job to succeed."""
    api = chat.api
    confirm, data = await ask_and_confirm(api)
    mark = press(api, ADMIN_ID, data, confirm)
    await next_message(api, ADMIN_ID, mark, "✅ rebuilt main/pg2", timeout=180)
    job = await chat.runtime.services.rebuild.wait(CLUSTER, REPLICA)
    assert job is not None and job.state is RebuildState.SUCCEEDED, job


async def wait_holder(bed: RebuildBed, expected: str) -> None:
    """Until the primary's walsender holding slot pg2 reads ``expected`` (60 s at most)."""
    await wait_until(
        lambda: bed.slot_holder() == expected, f"slot pg2's walsender to be {expected}", 60
    )


async def firing_for_pg2(runtime: Runtime) -> list[Any]:
    """The alerts firing for pg2 after a few monitor rounds."""
    await runtime.monitor.wait_rounds(5)
    return [a for a in runtime.alerts.firing() if a.node == REPLICA]


async def test_rebuilt_replica_streams_under_its_old_name_and_status_and_monitor_agree(
    bed: RebuildBed,
) -> None:
    assert await probe(bed.slot_holder) == "pg2|streaming|async"
    config = bed.config(extra=MONITOR, alert_chat_ids=(GROUP_CHAT_ID,))
    async with opened(config) as runtime, chat_for(runtime) as chat:
        await rebuild_in_chat(chat)

        # The primary sees the new replica under its old name, streaming on its slot.
        assert await probe(bed.slot_holder) == "pg2|streaming|async"
        conninfo = await probe(bed.psql, REPLICA, "SHOW primary_conninfo")
        assert "application_name=pg2" in conninfo and "pg_basebackup" not in conninfo

        # /status agrees: pg2 streams and no base backup is running.
        status = text_of(await reply_call(chat, VIEWER_ID, "/status"))
        assert "main: 1/1 replicas streaming" in status, status
        assert "pg2 replica · streaming · slot pg2" in status, status
        assert "base backup" not in status, status

        # The monitor: a few rounds leave nothing firing for pg2.
        notifier = TelegramNotifier(chat.api.token, chat.api.base_url, 0.5)
        await runtime.start_monitor(notifier)
        assert await firing_for_pg2(runtime) == []


async def test_synchronous_standby_is_sync_again_after_the_rebuild(bed: RebuildBed) -> None:
    conf = bed.pgset.primary.conf_dir / "postgresql.conf"
    conf.write_text(conf.read_text() + "synchronous_standby_names = 'pg2'\n")
    assert await probe(bed.psql, PRIMARY, "SELECT pg_reload_conf()") == "t"
    await wait_holder(bed, "pg2|streaming|sync")
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        await rebuild_in_chat(chat)
    assert await probe(bed.slot_holder) == "pg2|streaming|sync"

    # A commit on the primary completes: the synchronous standby acknowledges it. A cancelled
    # wait for synchronous replication is only a WARNING, so the notices are checked too.
    primary = bed.pgset.primary
    notices: list[str] = []
    async with await psycopg.AsyncConnection.connect(
        host=str(primary.socket_dir),
        port=primary.port,
        user=bed.pgset.superuser,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        await conn.execute("SET statement_timeout = '10s'")
        await asyncio.wait_for(conn.execute("CREATE TABLE after_rebuild (id int)"), 30)
        await asyncio.wait_for(conn.execute("INSERT INTO after_rebuild VALUES (1)"), 30)
    assert notices == [], notices
    await wait_until(
        lambda: bed.psql(REPLICA, "SELECT count(*) FROM after_rebuild") == "1",
        "the commit to reach pg2",
        30,
    )


async def test_the_configured_application_name_is_what_the_primary_sees(
    bed: RebuildBed,
) -> None:
    config = bed.config(application_name="custom_name")
    async with opened(config) as runtime, chat_for(runtime) as chat:
        mark = chat.send(ADMIN_ID, "/rebuild pg2 --dry-run")
        dry = text_of(await next_message(chat.api, ADMIN_ID, mark, "dry run"))
        assert "application_name=custom_name" in dry, dry
        await rebuild_in_chat(chat)
    assert await probe(bed.slot_holder) == "custom_name|streaming|async"


async def test_a_down_replica_keeps_the_name_its_primary_conninfo_gives_it(
    bed: RebuildBed,
) -> None:
    """With the replica down no walsender shows its name: the plan reads it from the
    replica's own primary_conninfo (a password in it never reaches the chat)."""
    repl = bed.pgset.repl_user
    secret = bed.pgset.password(repl)
    conninfo = await probe(bed.psql, REPLICA, "SHOW primary_conninfo")
    words = [w for w in conninfo.split() if not w.startswith(("application_name=", "password="))]
    words += [f"password='{secret}'", "application_name = 'custom_down'"]
    value = " ".join(words).replace("'", "''")
    await probe(bed.psql, REPLICA, f"ALTER SYSTEM SET primary_conninfo = '{value}'")
    await probe(bed.pgset.stop_node, REPLICA)
    await probe(bed.pgset.start_node, REPLICA)
    await wait_holder(bed, "custom_down|streaming|async")
    await probe(bed.pgset.stop_node, REPLICA)

    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        mark = chat.send(ADMIN_ID, "/rebuild pg2 --dry-run")
        dry = text_of(await next_message(chat.api, ADMIN_ID, mark, "dry run"))
        assert "application_name=custom_down" in dry, dry
        await rebuild_in_chat(chat)
        sent = [repr(c.params) for c in chat.api.calls]
        sent += [repr(entry) for entry in await audit_of(runtime)]
    assert await probe(bed.slot_holder) == "custom_down|streaming|async"
    assert sent and all(secret not in text for text in sent)
