"""/rebuild refused in preflight touches nothing; a missing slot is created by the plan.

Refusals go through the real PTB client and the fake Bot API (the chat shows the reason);
"nothing touched" is checked on disk (same data directory inode, marker file, no moved-aside
directories), on the servers (replica's postmaster unchanged, slots unchanged) and in the job
store (no job, no lock).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.app import Runtime
from bot.models import AuditEntry, CheckLevel, Outcome, RebuildState
from bot.phrases import Phrase
from bot.sandbox import PgBinaries, server_os_user
from bot.services.plans.model import describe
from handlers import render
from tests.conftest import ADMIN_ID, TelegramHarness
from tests.integration._helpers import (
    server_owned_dir,
    start_as_server,
    stop_started,
    wait_until,
)
from tests.integration.rebuild_bed import (
    CLUSTER,
    PRIMARY,
    REPLICA,
    RebuildBed,
    audit_of,
    chat_for,
    next_message,
    opened,
    probe,
    rebuild_bed,
    restore_streaming,
)

pytestmark = pytest.mark.integration


class Untouched:
    """pg2 as it was before a refused /rebuild."""

    def __init__(self, bed: RebuildBed) -> None:
        self.bed = bed
        self.marker = bed.put_marker()
        self.inode = bed.replica.data_dir.stat().st_ino
        self.postmaster = bed.pgset.postmaster_pid(REPLICA)

    async def assert_untouched(self, runtime: Runtime) -> None:
        bed = self.bed
        assert bed.replica.data_dir.stat().st_ino == self.inode
        assert bed.marker() == self.marker
        assert bed.moved_dirs("old") == [] and bed.moved_dirs("failed") == []
        assert bed.pgset.postmaster_pid(REPLICA) == self.postmaster
        assert await runtime.services.rebuild.latest_job(CLUSTER, REPLICA) is None
        assert await runtime.services.rebuild.lock_holder(CLUSTER, REPLICA) is None
        assert await probe(bed.basebackup_pids) == []


@pytest.fixture
async def bed(pg_binaries: PgBinaries) -> AsyncIterator[RebuildBed]:
    """A bed of its own on every major (for what may depend on the major)."""
    with rebuild_bed(pg_binaries) as started:
        yield started


@pytest.fixture
async def newest_bed(newest_pg_binaries: PgBinaries) -> AsyncIterator[RebuildBed]:
    """A bed of its own on the newest major only: refusals that change the bed beyond repair
    and whose reason does not depend on the major (slot holders, tablespaces, symlinks)."""
    with rebuild_bed(newest_pg_binaries) as started:
        yield started


@pytest.fixture(scope="module")
def module_bed(newest_pg_binaries: PgBinaries) -> Iterator[RebuildBed]:
    with rebuild_bed(newest_pg_binaries) as started:
        yield started


@pytest.fixture
def shared_bed(module_bed: RebuildBed) -> Iterator[RebuildBed]:
    """One bed (newest major) for the refusals that leave it as it was, or stop a node only:
    restored to streaming after each test (:func:`restore_streaming`)."""
    yield module_bed
    restore_streaming(module_bed)


async def refused_rebuild(chat: TelegramHarness) -> str:
    """``/rebuild pg2`` by the admin: the preflight report (no confirmation button)."""
    mark = chat.send(ADMIN_ID, f"/rebuild {REPLICA}")
    report = await next_message(chat.api, ADMIN_ID, mark, contains="rebuild of pg2 refused")
    assert not report.params.get("reply_markup"), "a refused preflight offers no button"
    rows = await _audit_rows(chat.runtime, "rebuild")
    assert rows[-1].outcome is Outcome.REFUSED
    assert rows[-1].reason.startswith("preflight failed: ")
    return str(report.result["text"])


async def _audit_rows(runtime: Runtime, command: str) -> list[AuditEntry]:
    for _ in range(500):
        rows = [r for r in await audit_of(runtime) if r.command == command]
        if rows:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"no audit row for {command}")


async def test_unreachable_primary_is_refused_and_nothing_is_touched(
    shared_bed: RebuildBed,
) -> None:
    bed = shared_bed
    before = Untouched(bed)
    slots = await probe(bed.slot_names)
    await probe(bed.pgset.stop_node, PRIMARY)
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert text.startswith("❌ rebuild of pg2 refused: primary unreachable: "), text
        assert "a rebuild copies from the primary: bring it back first" in text
        await before.assert_untouched(runtime)
    await probe(bed.pgset.start_node, PRIMARY)
    assert await probe(bed.slot_names) == slots


async def test_slot_held_by_another_process_is_refused_naming_its_pid(
    newest_bed: RebuildBed,
) -> None:
    bed = newest_bed
    await probe(bed.pgset.stop_node, REPLICA)
    before = Untouched(bed)
    primary = bed.pgset.primary
    receiver_dir = server_owned_dir(bed.base, "receivewal")
    conninfo = (
        f"host=127.0.0.1 port={primary.port} user={bed.pgset.repl_user} "
        f"passfile={bed.pgset.passfile}"
    )
    receiver = start_as_server(
        [
            str(bed.pgset.binaries.exe("pg_receivewal")),
            f"--dbname={conninfo}",
            f"--directory={receiver_dir}",
            f"--slot={REPLICA}",
            "--no-loop",
        ]
    )
    try:
        for _ in range(1000):
            if await probe(bed.slot_active, REPLICA):
                break
            await asyncio.sleep(0.02)
        holder = await probe(
            bed.psql,
            PRIMARY,
            f"SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{REPLICA}'",
        )
        assert holder.isdigit(), f"pg_receivewal does not hold the slot ({holder!r})"
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            text = await refused_rebuild(chat)
            assert f"slot pg2 is active for PID {holder} (application_name pg_receivewal)" in text
            assert "find the process using the slot and stop it" in text
            await before.assert_untouched(runtime)
    finally:
        stop_started(receiver, str(receiver_dir))


async def test_replica_settings_lower_than_the_primary_are_refused_naming_them(
    bed: RebuildBed,
) -> None:
    before = Untouched(bed)
    conf = bed.pgset.primary.conf_dir / "postgresql.conf"
    conf.write_text(conf.read_text() + "max_connections = 60\nmax_worker_processes = 12\n")
    await probe(bed.pgset.stop_node, PRIMARY)
    await probe(bed.pgset.start_node, PRIMARY)
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert "(and 1 more)" in text.splitlines()[0], text
        assert "max_connections = 50 is lower than on the primary, where it is 60" in text
        assert "max_worker_processes = 8 is lower than on the primary, where it is 12" in text
        assert "set max_connections = 60 (or more) in pg2's configuration" in text
        await before.assert_untouched(runtime)


async def test_missing_slot_is_created_as_the_first_step_and_the_rebuild_succeeds(
    bed: RebuildBed,
) -> None:
    # A broken replica whose slot is gone: stopped first, so that it does not hold the slot.
    await probe(bed.pgset.stop_node, REPLICA)
    await probe(bed.psql, PRIMARY, f"SELECT pg_drop_replication_slot('{REPLICA}')")
    assert await probe(bed.slot_names) == []
    async with opened(bed.config()) as runtime:
        service = runtime.services.rebuild
        report, plan = await service.preflight(REPLICA)
        assert report.ok, render.rebuild_preflight(report)
        slot = next(i for i in report.items if i.name == "slot")
        assert slot.level is CheckLevel.WARN
        assert slot.detail == Phrase.of("preflight.slot.missing", slot=REPLICA, primary=PRIMARY)
        assert "will be created" in render.to_plain_text(render.rebuild_preflight(report))
        assert plan.steps[0].key == "create_slot"
        assert f"pg_create_physical_replication_slot('{REPLICA}')" in describe(plan.steps[0].action)

        await service.start(plan, ADMIN_ID, ADMIN_ID)
        job = await service.wait(CLUSTER, REPLICA)
        assert job is not None and job.state is RebuildState.SUCCEEDED, job
        steps = [r.command for r in await audit_of(runtime) if r.outcome is Outcome.OK]
        assert steps.index("rebuild.create_slot") < steps.index("rebuild.stop")

    assert await probe(bed.slot_names) == [REPLICA]
    assert await probe(bed.streams)
    assert len(bed.moved_dirs("old")) == 1


async def test_a_replica_that_was_promoted_is_refused_and_not_wiped(bed: RebuildBed) -> None:
    assert await probe(bed.psql, REPLICA, "SELECT pg_promote()") == "t"
    assert await probe(bed.psql, REPLICA, "SELECT pg_is_in_recovery()") == "f"
    before = Untouched(bed)
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert "pg2 answers and is NOT in recovery: it is a primary; refusing to wipe it" in text
        await before.assert_untouched(runtime)


# --- the data directory must be the configured replica's, in a layout a rebuild handles ------


def run_as_server(argv: list[str]) -> str:
    """Run ``argv`` as the server OS user and return its stdout (raises on failure)."""
    user = server_os_user()
    full = ["runuser", "-u", user, "--", *argv] if user is not None else argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run(full, capture_output=True, text=True, env=env, cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def tree_of(path: Path) -> list[tuple[str, int]]:
    """Every entry below ``path`` with its inode (to prove nothing was moved or replaced)."""
    return sorted((str(p.relative_to(path)), p.lstat().st_ino) for p in path.rglob("*"))


async def test_data_dir_of_another_stopped_cluster_is_refused_and_left_alone(
    shared_bed: RebuildBed,
) -> None:
    bed = shared_bed
    other = server_owned_dir(bed.base, "other") / "data"
    run_as_server([str(bed.pgset.binaries.exe("initdb")), "-D", str(other), "-A", "trust"])
    before_other = tree_of(other)
    await probe(bed.pgset.stop_node, REPLICA)
    before = Untouched(bed)
    primary_id = await probe(bed.psql, PRIMARY, "SELECT system_identifier FROM pg_control_system()")
    async with opened(bed.config(data_dir=other)) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert f"{other} belongs to another cluster: system identifier " in text, text
        assert f"the primary's is {primary_id}" in text, text
        await before.assert_untouched(runtime)
    assert tree_of(other) == before_other
    assert not list(other.parent.glob("data.replbot-*"))


async def test_a_replica_with_tablespaces_is_refused(newest_bed: RebuildBed) -> None:
    bed = newest_bed
    await probe(
        bed.psql,
        PRIMARY,
        "SET allow_in_place_tablespaces = on; CREATE TABLESPACE spare LOCATION ''",
    )
    tblspc = bed.replica.data_dir / "pg_tblspc"
    await wait_until(lambda: any(tblspc.iterdir()), "the tablespace to reach pg2", 30)
    before = Untouched(bed)
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert f"{tblspc} is not empty (1 entry): a rebuild does not handle tablespaces" in text
        await before.assert_untouched(runtime)


async def test_a_symlinked_pg_wal_is_refused_and_kept(newest_bed: RebuildBed) -> None:
    bed = newest_bed
    await probe(bed.pgset.stop_node, REPLICA)
    wal = bed.replica.data_dir / "pg_wal"
    elsewhere = server_owned_dir(bed.base, "wal") / "pg_wal"
    shutil.move(wal, elsewhere)
    wal.symlink_to(elsewhere)
    os.lchown(wal, elsewhere.stat().st_uid, elsewhere.stat().st_gid)
    await probe(bed.pgset.start_node, REPLICA)
    await probe(bed.wait_streaming)
    before = Untouched(bed)
    async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert f"{wal} is a symlink (to {elsewhere}): a rebuild does not handle" in text, text
        await before.assert_untouched(runtime)
    assert wal.is_symlink() and os.readlink(wal) == str(elsewhere)


async def test_a_symlinked_data_dir_is_refused_and_kept(shared_bed: RebuildBed) -> None:
    bed = shared_bed
    link = bed.base / "pg2-link"
    link.symlink_to(bed.replica.data_dir)
    before = Untouched(bed)
    async with opened(bed.config(data_dir=link)) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert f"{link} is a symlink (to {bed.replica.data_dir})" in text, text
        await before.assert_untouched(runtime)
    assert link.is_symlink()


async def test_a_replica_running_from_another_directory_is_refused(shared_bed: RebuildBed) -> None:
    bed = shared_bed
    # A copy of pg2's own data directory: same system identifier, but pg2 does not run from it.
    await probe(bed.pgset.stop_node, REPLICA)
    copy = bed.replica.data_dir.parent / "data-copy"
    await probe(lambda: run_as_server(["cp", "-a", str(bed.replica.data_dir), str(copy)]))
    await probe(bed.pgset.start_node, REPLICA)
    await probe(bed.wait_streaming)
    before = Untouched(bed)
    before_copy = tree_of(copy)
    async with opened(bed.config(data_dir=copy)) as runtime, chat_for(runtime) as chat:
        text = await refused_rebuild(chat)
        assert f"pg2 runs from {bed.replica.data_dir}, not from data_dir {copy}" in text, text
        await before.assert_untouched(runtime)
    assert tree_of(copy) == before_copy


async def test_a_data_dir_that_is_a_mount_point_is_refused(shared_bed: RebuildBed) -> None:
    bed = shared_bed
    data = bed.replica.data_dir
    subprocess.run(["mount", "--bind", str(data), str(data)], check=True)
    try:
        before = Untouched(bed)
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            text = await refused_rebuild(chat)
            assert f"{data} is a mount point: it cannot be moved aside" in text, text
            await before.assert_untouched(runtime)
    finally:
        subprocess.run(["umount", str(data)], check=True)
