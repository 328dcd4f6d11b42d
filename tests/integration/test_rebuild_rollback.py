"""Rebuilds that fail are rolled back to the old replica, over real SSH and PostgreSQL.

Each test has a bed of its own (primary pg1, replica pg2 reached through a loopback sshd) and
checks the end state on disk and on the servers: the old data directory is back (same inode,
the marker file only the old data has), pg2 streams through slot pg2, the rollback slot is
gone, no pg_basebackup is left running, and nothing the replica had was deleted.
"""

from __future__ import annotations

import contextlib
import secrets

import pytest

from bot.app import Runtime
from bot.errors import RebuildRefused
from bot.models import RebuildState
from bot.sandbox import PgBinaries
from handlers import render
from tests.conftest import ADMIN_ID, LEDGER
from tests.integration._helpers import wait_until
from tests.integration.rebuild_bed import (
    CLUSTER,
    PRIMARY,
    REPLICA,
    Progresses,
    RebuildBed,
    opened,
    probe,
    rebuild_bed,
    wait_for_step,
)

pytestmark = pytest.mark.integration

# Writes a little WAL, ends the segment and checkpoints: WAL no slot needs becomes recyclable.
CHURN = (
    "CREATE TABLE IF NOT EXISTS churn (x int); INSERT INTO churn VALUES (1); "
    "SELECT pg_switch_wal(); CHECKPOINT;"
)


class OldReplica:
    """What only pg2's data directory from before the rebuild has."""

    def __init__(self, bed: RebuildBed) -> None:
        self.bed = bed
        self.marker = bed.put_marker()
        self.inode = bed.replica.data_dir.stat().st_ino

    async def assert_restored_and_streaming(self) -> None:
        """The old directory is pg2's data directory again and pg2 streams through its slot."""
        bed = self.bed
        data = bed.replica.data_dir
        assert data.stat().st_ino == self.inode, "pg2's data directory is not the old one"
        assert bed.marker() == self.marker
        assert bed.moved_dirs("old") == [], "the old directory was not put back"
        await probe(bed.wait_streaming, 30)
        assert await probe(bed.receiver_status) == "streaming"
        assert await probe(bed.slot_active, REPLICA)
        assert await probe(bed.slot_names) == [REPLICA], "the rollback slot pg2_rb was left"
        assert await probe(bed.basebackup_pids) == []


async def start_rebuild(runtime: Runtime, sink: Progresses) -> None:
    """Preflight (must pass) and start pg2's rebuild through the service."""
    service = runtime.services.rebuild
    report, plan = await service.preflight(REPLICA)
    assert report.ok, render.rebuild_preflight(report)
    await service.start(plan, ADMIN_ID, ADMIN_ID, sink)


async def test_basebackup_refused_at_login_restores_the_old_replica(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        pgpass = bed.base / "rebuild.pgpass"
        good = bed.pgset.passfile.read_text()
        bed.own_file(pgpass, good)
        old = OldReplica(bed)
        async with opened(bed.config(passfile=pgpass)) as runtime:
            service = runtime.services.rebuild
            report, plan = await service.preflight(REPLICA)
            assert report.ok, render.rebuild_preflight(report)
            # After a passing preflight the replica host's passfile goes bad: only the
            # rebuild's connections use it (the old replica's primary_conninfo names another).
            wrong = secrets.token_urlsafe(18)
            LEDGER.secrets.add(wrong)
            bed.own_file(pgpass, f"127.0.0.1:*:*:{bed.pgset.repl_user}:{wrong}\n")
            sink = Progresses()
            await service.start(plan, ADMIN_ID, ADMIN_ID, sink)
            job = await service.wait(CLUSTER, REPLICA)
            assert await service.lock_holder(CLUSTER, REPLICA) is None

        assert job is not None and job.state is RebuildState.ROLLED_BACK, job
        assert job.step == "basebackup"
        assert "progress.failed.basebackup" in job.detail
        assert "progress.rollback.old_streams node=pg2" in job.detail
        assert "password authentication failed" in sink[-1].output
        await old.assert_restored_and_streaming()
        assert bed.moved_dirs("failed") == [], "pg_basebackup copied nothing: no partial copy"


async def test_basebackup_failing_mid_copy_restores_through_the_rollback_slot(
    pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(pg_binaries) as bed:
        old = OldReplica(bed)
        async with opened(bed.config(max_rate="2M")) as runtime:
            sink = Progresses()
            await start_rebuild(runtime, sink)
            await wait_for_step(runtime, "basebackup")

            # The backup moves slot pg2 past the old replica's position. Recycle WAL on the
            # primary: what the old replica needs is then kept by the rollback slot alone.
            await wait_until(
                lambda: (lsns := bed.slot_lsns()).get(REPLICA, 0) > lsns.get("pg2_rb", 0),
                "the backup to advance slot pg2",
                30,
            )
            for _ in range(2):
                await probe(bed.psql, PRIMARY, CHURN)
            lsns = await probe(bed.slot_lsns)
            kept = lsns["pg2_rb"]
            assert lsns["pg2_rb"] < lsns[REPLICA]
            needed = await probe(bed.wal_segment, kept)
            assert needed < await probe(bed.wal_segment, lsns[REPLICA])
            assert needed < await probe(bed.wal_segment, await probe(bed.redo_lsn))
            assert await probe(bed.wal_file_exists, kept)

            # pg_basebackup fails: the primary ends its connections mid-copy.
            backup = await probe(bed.basebackup_walsenders)
            terminated = await probe(
                bed.psql,
                PRIMARY,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication "
                f"WHERE pid IN ({', '.join(str(p) for p in backup) or 'NULL'})",
            )
            assert int(terminated) >= 1
            job = await runtime.services.rebuild.wait(CLUSTER, REPLICA)
            assert await runtime.services.rebuild.lock_holder(CLUSTER, REPLICA) is None

        assert job is not None and job.state is RebuildState.ROLLED_BACK, job
        assert job.step == "basebackup"
        assert "progress.failed.basebackup" in job.detail
        assert f"progress.rollback.slot_restored slot={REPLICA}" in job.detail
        assert "progress.rollback.old_streams node=pg2" in job.detail
        assert "pg_basebackup: error" in sink[-1].output
        await old.assert_restored_and_streaming()
        # Nothing is deleted on a failure path: the partial copy must survive as .failed.
        failed = bed.moved_dirs("failed")
        assert failed, (
            "the partial copy was deleted; pg_basebackup's own output says: "
            + " | ".join(line for line in sink[-1].output.splitlines() if "removing" in line)
        )


async def test_dropped_ssh_connection_mid_backup_leaves_no_pg_basebackup_and_rolls_back(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        old = OldReplica(bed)
        async with opened(bed.config(max_rate="1M")) as runtime:
            sink = Progresses()
            await start_rebuild(runtime, sink)
            await wait_for_step(runtime, "basebackup")
            assert await probe(bed.basebackup_pids), "pg_basebackup is not running"

            killed = await probe(bed.sshd.kill_connections)
            assert killed, "no SSH session was open"
            job = await runtime.services.rebuild.wait(CLUSTER, REPLICA)
            assert await runtime.services.rebuild.lock_holder(CLUSTER, REPLICA) is None

        assert job is not None and job.state is RebuildState.ROLLED_BACK, job
        assert job.step == "basebackup"
        assert "Connection lost" in job.detail or "progress.failed.basebackup" in job.detail, (
            job.detail
        )
        assert "progress.rollback.old_streams node=pg2" in job.detail
        assert await probe(bed.basebackup_pids) == []
        assert await probe(bed.basebackup_walsenders) == []
        await old.assert_restored_and_streaming()
        failed = bed.moved_dirs("failed")
        assert len(failed) == 1 and (failed[0] / "PG_VERSION").exists(), failed
        assert str(failed[0]) in job.detail


async def test_new_replica_that_does_not_start_is_rolled_back_with_its_log_tail(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        old = OldReplica(bed)
        # ALTER SYSTEM settings travel with the backup: the new copy asks for a library that
        # does not exist and cannot start; the old replica (and the primary, not reloaded)
        # never read it.
        await probe(
            bed.psql, PRIMARY, "ALTER SYSTEM SET shared_preload_libraries = 'replbot_no_such_lib'"
        )
        async with opened(bed.config()) as runtime:
            sink = Progresses()
            await start_rebuild(runtime, sink)
            job = await runtime.services.rebuild.wait(CLUSTER, REPLICA)
        await probe(bed.psql, PRIMARY, "ALTER SYSTEM RESET shared_preload_libraries")

        assert job is not None and job.state is RebuildState.ROLLED_BACK, job
        assert job.step == "start"
        assert "progress.failed.start node=pg2 step=start" in job.detail
        assert "progress.rollback.old_streams node=pg2" in job.detail
        final = sink[-1]
        assert final.state is RebuildState.ROLLED_BACK
        assert 'could not access file "replbot_no_such_lib"' in final.output, final.output
        shown = render.to_plain_text(render.rebuild_progress(final))
        assert "replbot_no_such_lib" in shown
        await old.assert_restored_and_streaming()
        failed = bed.moved_dirs("failed")
        assert len(failed) == 1, failed
        auto = (failed[0] / "postgresql.auto.conf").read_text()
        assert "replbot_no_such_lib" in auto, "the failed copy is the new one, kept as it was"


async def test_cancel_while_rolling_back_does_not_strand_the_job(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        old = OldReplica(bed)
        await probe(
            bed.psql, PRIMARY, "ALTER SYSTEM SET shared_preload_libraries = 'replbot_no_such_lib'"
        )
        async with opened(bed.config()) as runtime:
            service = runtime.services.rebuild
            await start_rebuild(runtime, Progresses())
            await wait_for_step(runtime, "rollback")
            # An admin sends --cancel while the failed job is already rolling back: the
            # rollback must still finish (or the cancel be refused), never be cut short.
            with contextlib.suppress(RebuildRefused):
                await service.cancel(REPLICA, None, by="alice-admin")
            job = await service.wait(CLUSTER, REPLICA)
            holder = await service.lock_holder(CLUSTER, REPLICA)
            stranded = []
            if job is not None and job.state is RebuildState.RUNNING:
                for mode in ("rollback", "abandon"):
                    try:
                        await getattr(service, mode)(REPLICA, None, ADMIN_ID)
                    except RebuildRefused as exc:
                        stranded.append(f"--{mode} refused: {exc.phrase}")
                stranded.append(
                    f"directories: data={bed.replica.data_dir.exists()} "
                    f"old={[p.name for p in bed.moved_dirs('old')]} "
                    f"pg2 running={bed.pgset.is_running(REPLICA)}"
                )
        await probe(bed.psql, PRIMARY, "ALTER SYSTEM RESET shared_preload_libraries")

        assert job is not None and job.state is RebuildState.ROLLED_BACK, (job, stranded)
        assert holder is None, holder
        await old.assert_restored_and_streaming()
