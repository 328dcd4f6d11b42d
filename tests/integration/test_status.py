"""/status through the real PTB client and the fake Bot API, on real PostgreSQL.

Read-only cases use the shared set (a base backup and a stray walsender are extra client
connections, stopped by PID and waited for); cases that stop servers get a set of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.adapters.monitor_pg import PsycopgMonitorProbe
from bot.models import replay_lag_seconds
from bot.sandbox import LocalReplicationSet, PgBinaries
from tests.conftest import ADMIN_ID, VIEWER_ID, TelegramHarness, short_tmpdir
from tests.integration._helpers import (
    LSN_RE,
    lsn_to_int,
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

HOSTILE_NAME = "<b>&evil"


@pytest.fixture
def own_set(pg_binaries: PgBinaries) -> Iterator[LocalReplicationSet]:
    """A primary + replica of this test alone (it stops servers)."""
    with scratch_set(pg_binaries) as rset:
        yield rset


def _replay_known(pgset: LocalReplicationSet) -> bool:
    return (
        pgset.psql(
            "pg1",
            "SELECT count(*) FROM pg_stat_replication "
            "WHERE application_name = 'pg2' AND replay_lsn IS NOT NULL",
        )
        == "1"
    )


def _no_walsenders_but_pg2(pgset: LocalReplicationSet) -> bool:
    return (
        pgset.psql(
            "pg1",
            "SELECT count(*) FROM pg_stat_replication WHERE application_name <> 'pg2'",
        )
        == "0"
        and pgset.psql("pg1", "SELECT string_agg(slot_name, ',') FROM pg_replication_slots")
        == "pg2"
    )


async def test_status_shows_primary_version_timeline_lsn_and_streaming_replica_lag(
    telegram: TelegramHarness, pgset: LocalReplicationSet, pg_binaries: PgBinaries
) -> None:
    await wait_until(lambda: _replay_known(pgset), "pg2's replay_lsn on the primary")
    before = lsn_to_int(pgset.psql("pg1", "SELECT pg_current_wal_lsn()"))
    timeline = pgset.psql("pg1", "SELECT timeline_id FROM pg_control_checkpoint()")

    text = plain(await reply_call(telegram, VIEWER_ID, "/status"))

    after = lsn_to_int(pgset.psql("pg1", "SELECT pg_current_wal_lsn()"))
    assert "main: 1/1 replicas streaming" in text
    primary = re.search(
        r"^pg1 primary · up · PostgreSQL (.+?) · timeline (\d+) · LSN (\S+)$", text, re.M
    )
    assert primary, text
    assert primary.group(1).startswith(f"{pg_binaries.major}.")
    assert primary.group(2) == timeline
    assert LSN_RE.match(primary.group(3))
    assert before <= lsn_to_int(primary.group(3)) <= after
    assert re.search(r"^✅ pg2 replica · streaming · slot pg2$", text, re.M), text
    lag = re.search(r"^ +lag (\d+(?:\.\d)?) (B|kB|MB|GB) · replay lag (\S+ \S+|–)$", text, re.M)
    assert lag, f"no numeric lag line for pg2 in:\n{text}"
    assert re.search(r"receiver streaming from 127\.0\.0\.1:\d+ · slot pg2", text), text


async def test_status_reports_a_stopped_replica_as_down_with_reason_and_still_shows_primary(
    own_set: LocalReplicationSet,
) -> None:
    own_set.stop_node("pg2")
    await wait_until(
        lambda: own_set.psql("pg1", "SELECT count(*) FROM pg_stat_replication") == "0",
        "the primary to notice pg2's walsender is gone",
    )
    async with telegram_for(own_set) as tg:
        call = await reply_call(tg, ADMIN_ID, "/status")
    text = plain(call)
    assert "main: 0/1 replicas streaming" in text
    assert re.search(r"^pg1 primary · up · PostgreSQL .+ · timeline 1 · LSN \S+$", text, re.M)
    assert re.search(r"^❌ pg2 replica · down · slot pg2$", text, re.M), text
    reason = re.search(r"^ +reason: (.+)$", text, re.M)
    assert reason, text
    assert reason.group(1).strip() not in {"", "unknown"}


async def test_status_says_the_primary_is_down_when_it_is_stopped(
    own_set: LocalReplicationSet,
) -> None:
    own_set.stop_node("pg1")
    async with telegram_for(own_set) as tg:
        call = await reply_call(tg, ADMIN_ID, "/status")
    text = plain(call)
    assert re.search(r"^❌ main: primary pg1 is down$", text, re.M), text
    reason = re.search(r"^ +reason: (.+)$", text, re.M)
    assert reason, text
    assert reason.group(1).strip() not in {"", "unknown"}
    assert "replicas streaming" not in text
    assert not re.search(r"pg2 replica · streaming", text), text


async def test_status_shows_a_running_base_backup_as_backup_not_as_a_replica(
    telegram: TelegramHarness, pgset: LocalReplicationSet
) -> None:
    work = short_tmpdir("rbb")
    target = server_owned_dir(work, "target")
    argv = [
        a
        for a in pgset.basebackup_command("pg2", target)
        if not a.startswith("--slot=") and a != "--write-recovery-conf"
    ]
    proc = start_as_server([*argv, "--max-rate=32k"])
    try:
        await wait_until(
            lambda: (
                pgset.psql("pg1", "SELECT count(*) FROM pg_stat_replication WHERE state = 'backup'")
                == "1"
            ),
            "pg_basebackup's walsender in state 'backup'",
        )
        text = plain(await reply_call(telegram, ADMIN_ID, "/status"))
        pids = pgset.psql(
            "pg1",
            "SELECT string_agg(pid::text, ',') FROM pg_stat_replication "
            "WHERE application_name = 'pg_basebackup'",
        ).split(",")
    finally:
        stop_started(proc, str(target))
        shutil.rmtree(work, ignore_errors=True)
    await wait_until(lambda: _no_walsenders_but_pg2(pgset), "the backup's walsenders to go")

    assert "main: 1/1 replicas streaming" in text, text
    backup_lines = re.findall(r"^⏳ base backup running: pid (\d+) from \S+ \(", text, re.M)
    assert backup_lines, text
    assert set(backup_lines) <= set(pids)
    assert any(
        re.search(rf"base backup running: pid {pid} from \S+ \(backup, ", text) for pid in pids
    ), text
    assert "unconfigured standby" not in text


@contextlib.asynccontextmanager
async def stray_standby(pgset: LocalReplicationSet, application_name: str) -> AsyncIterator[None]:
    """pg_receivewal (no slot) streaming from the shared primary under ``application_name``,
    stopped by PID afterwards; waits until the primary has only pg2's walsender again."""
    work = short_tmpdir("rbw")
    target = server_owned_dir(work, "wal")
    p = pgset.primary
    conninfo = (
        f"host=127.0.0.1 port={p.port} user={pgset.repl_user} passfile={pgset.passfile} "
        f"application_name={application_name}"
    )
    receivewal = str(pgset.binaries.exe("pg_receivewal"))
    proc = start_as_server([receivewal, "-d", conninfo, "-D", str(target), "--no-loop"])
    name_sql = application_name.replace("'", "''")
    try:
        await wait_until(
            lambda: (
                pgset.psql(
                    "pg1",
                    f"SELECT state FROM pg_stat_replication WHERE application_name = '{name_sql}'",
                )
                == "streaming"
            ),
            "pg_receivewal to stream",
        )
        yield
    finally:
        stop_started(proc, str(target))
        shutil.rmtree(work, ignore_errors=True)
    await wait_until(lambda: _no_walsenders_but_pg2(pgset), "pg_receivewal's walsender to go")


async def test_status_escapes_a_hostile_application_name_of_an_unconfigured_standby(
    telegram: TelegramHarness, pgset: LocalReplicationSet
) -> None:
    async with stray_standby(pgset, HOSTILE_NAME):
        call = await reply_call(telegram, ADMIN_ID, "/status")

    assert call.ok, f"the fake Bot API rejected the reply: {call.status} {call.response}"
    text = plain(call)
    assert re.search(
        rf"^ℹ️ unconfigured standby {re.escape(HOSTILE_NAME)} from \S+: streaming, slot –$",
        text,
        re.M,
    ), text
    assert "&lt;b&gt;&amp;evil" in call.params["text"]
    assert "main: 1/1 replicas streaming" in text


async def test_status_shows_a_walsenders_client_address_as_a_host_not_a_network(
    telegram: TelegramHarness, pgset: LocalReplicationSet
) -> None:
    async with stray_standby(pgset, "stray"):
        text = plain(await reply_call(telegram, ADMIN_ID, "/status"))
    # pg_stat_replication.client_addr is inet; PostgreSQL shows a host as 127.0.0.1, not /32
    assert re.search(r"^ℹ️ unconfigured standby stray from 127\.0\.0\.1: streaming", text, re.M), (
        text
    )


async def test_status_after_a_replica_restart_shows_it_up_not_a_stale_connection(
    own_set: LocalReplicationSet,
) -> None:
    async with telegram_for(own_set) as tg:
        first = plain(await reply_call(tg, ADMIN_ID, "/status"))
        assert "main: 1/1 replicas streaming" in first
        # The bot keeps its connection to pg2; the restart kills it behind the bot's back.
        own_set.stop_node("pg2")
        own_set.start_node("pg2")
        own_set.wait_streaming("pg2")
        second = plain(await reply_call(tg, ADMIN_ID, "/status"))
    assert "❌ pg2 replica · down" not in second, second
    assert "main: 1/1 replicas streaming" in second, second


async def test_status_shows_no_replay_lag_on_an_idle_replica_whose_replay_lag_is_stale(
    own_set: LocalReplicationSet,
) -> None:
    """After a replay pause, pg_stat_replication keeps the measured replay_lag for a moment
    although pg2 replayed everything: the monitor's lag is 0 s, and so is /status's."""
    async with telegram_for(own_set) as tg:
        own_set.psql("pg2", "SELECT pg_wal_replay_pause()")
        own_set.psql(
            "pg1",
            "CREATE TABLE paused WITH (autovacuum_enabled = off) AS "
            "SELECT generate_series(1, 100) AS x",
        )
        await asyncio.sleep(2)  # replay stays paused: the lag measured on resume is ~2 s
        own_set.psql("pg2", "SELECT pg_wal_replay_resume()")
        config = tg.runtime.config
        cluster = config.clusters[0]
        probe = PsycopgMonitorProbe(config.monitor.timeout_s)
        try:
            for _ in range(2000):  # until the monitor sees pg2 caught up with a stale replay_lag
                primary = await probe.poll(cluster.name, cluster.primary)
                [sender] = [s for s in primary.walsenders if s.application_name == "pg2"]
                stale = (sender.replay_lag_s or 0.0) > 1.0
                if stale and sender.replay_lsn == sender.sent_lsn:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"never saw a caught-up pg2 with a stale replay_lag: {sender}")
            text = plain(await reply_call(tg, VIEWER_ID, "/status"))
        finally:
            await probe.close()

    assert replay_lag_seconds(sender) == 0.0  # the monitor's view of that poll
    assert re.search(r"^ +lag \S+ \S+ · replay lag 0\.0 s$", text, re.M), text
