"""A successful /rebuild, end to end: chat → confirmation → SSH → pg_basebackup → streaming.

The primary holds about 200 MB and takes writes before and during the rebuild; the backup is
throttled (``max_rate``) so that the progress message is edited with percentages. Afterwards
every write is readable on the new replica, which streams through its slot; the old data
directory is kept beside it, the rollback slot is gone, and the audit log has a row for every
step. Also: the bot keeps answering /status while a rebuild runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import psycopg
import pytest

from bot.app import Runtime
from bot.models import Outcome, RebuildState
from bot.sandbox import PgBinaries
from tests.conftest import ADMIN_ID, VIEWER_ID
from tests.integration._helpers import reply_call, wait_until
from tests.integration.rebuild_bed import (
    CLUSTER,
    PRIMARY,
    REPLICA,
    RebuildBed,
    ask_and_confirm,
    audit_of,
    button_data,
    chat_for,
    next_message,
    opened,
    press,
    probe,
    rebuild_bed,
    text_of,
    wait_for_step,
)

pytestmark = pytest.mark.integration

FILLER = (
    "CREATE TABLE filler AS "
    "SELECT g AS id, repeat(md5(g::text), 6) AS pad FROM generate_series(1, 700000) AS g; "
    "CREATE TABLE writes (id bigserial PRIMARY KEY, step text NOT NULL); "
    "INSERT INTO writes (step) SELECT 'before' FROM generate_series(1, 1000);"
)
COUNTS = "SELECT step, count(*) FROM writes GROUP BY step ORDER BY step"
STEPS = (
    "stop",
    "check_stopped",
    "slot_released",
    "keep_wal",
    "move_aside",
    "basebackup",
    "start",
    "verify",
    "release_wal",
)


@contextlib.asynccontextmanager
async def writes_during_rebuild(bed: RebuildBed, runtime: Runtime) -> AsyncIterator[None]:
    """Insert rows into the primary in a loop, each labelled with the job's current step."""
    primary = bed.pgset.primary
    stop = asyncio.Event()

    async def loop() -> int:
        written = 0
        async with await psycopg.AsyncConnection.connect(
            host=str(primary.socket_dir),
            port=primary.port,
            user=bed.pgset.superuser,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            while not stop.is_set():
                progress = runtime.services.rebuild.progress_of(CLUSTER, REPLICA)
                step = progress.step if progress is not None else "outside"
                await conn.execute("INSERT INTO writes (step) VALUES (%s)", (step,))
                written += 1
                await asyncio.sleep(0.01)
        return written

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        assert await task > 0


async def test_rebuild_replaces_the_replica_while_the_primary_takes_writes(
    pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(pg_binaries) as bed:
        await probe(bed.psql, PRIMARY, FILLER)
        size = int(await probe(bed.psql, PRIMARY, "SELECT pg_database_size('postgres')"))
        assert size > 150 * 1024**2
        marker = bed.put_marker()
        old_inode = bed.replica.data_dir.stat().st_ino
        async with opened(bed.config(max_rate="40M")) as runtime, chat_for(runtime) as chat:
            api = chat.api
            async with writes_during_rebuild(bed, runtime):
                confirm, data = await ask_and_confirm(api)
                mark = press(api, ADMIN_ID, data, confirm)
                started = await next_message(api, ADMIN_ID, mark, "⏳ rebuilding main/pg2")
                outcome = await next_message(
                    api, ADMIN_ID, mark, "✅ rebuilt main/pg2", timeout=180
                )
                job = await runtime.services.rebuild.wait(CLUSTER, REPLICA)
            primary_counts = await probe(bed.psql, PRIMARY, COUNTS)

            # The chat: the confirmation was closed, one message was edited in place with the
            # backup's percentage, and a new message told the outcome.
            closed = api.message(ADMIN_ID, int(confirm.result["message_id"]))
            assert closed is not None and "confirmed by alice-admin" in closed["text"]
            progress_id = started.result["message_id"]
            edits = [
                text_of(c)
                for c in api.calls_of("editMessageText")
                if c.params.get("message_id") == progress_id
            ]
            assert len(edits) >= 3, edits
            percents = [int(m.group(1)) for e in edits if (m := re.search(r" (\d{1,3}) % · ", e))]
            assert any(p < 100 for p in percents), edits
            assert any("step 6/9: pg_basebackup from pg1" in e for e in edits), edits
            assert edits[-1].startswith("✅ rebuilt main/pg2"), edits[-1]
            assert f"Old data kept in {bed.moved_dirs('old')[0]}" in edits[-1]
            assert text_of(outcome).startswith("✅ rebuilt main/pg2")
            assert api.calls.index(outcome) > max(
                i for i, c in enumerate(api.calls) if c.method == "editMessageText"
            )

            # The audit log: the request, the confirmation, and every step of the job in order.
            rows = await audit_of(runtime)
            assert [(r.command, r.outcome) for r in rows if not r.user_name.startswith("rebuild#")][
                :3
            ] == [
                ("rebuild", Outcome.OK),
                ("rebuild.confirm", Outcome.INTENT),
                ("rebuild.confirm", Outcome.OK),
            ]
            job_rows = [r for r in rows if r.user_name == f"rebuild#{job.id}"] if job else []
            assert [(r.command, r.outcome) for r in job_rows] == [
                ("rebuild.begin", Outcome.OK),
                *(
                    (f"rebuild.{key}", outcome)
                    for key in STEPS
                    for outcome in (Outcome.INTENT, Outcome.OK)  # intent before each step
                ),
                ("rebuild.finish", Outcome.OK),
            ]
            assert job_rows[-1].reason.startswith("succeeded: progress.rebuilt node=pg2")

        assert job is not None and job.state is RebuildState.SUCCEEDED, job
        assert job.confirmed_by == ADMIN_ID
        # The new replica streams through its slot; the rollback slot is gone.
        assert await probe(bed.receiver_status) == "streaming"
        assert await probe(bed.slot_active, REPLICA)
        assert await probe(bed.slot_names) == [REPLICA]
        # Every write, before and during the rebuild, is on the new replica.
        counts = dict(line.split("|") for line in primary_counts.splitlines())
        assert counts["before"] == "1000"
        assert int(counts.get("basebackup", 0)) > 0, counts
        await wait_until(
            lambda: bed.psql(REPLICA, COUNTS) == primary_counts, "the replica to catch up", 60
        )
        assert bed.psql(REPLICA, "SELECT count(*) FROM filler") == "700000"
        # The old data directory is kept beside the new one, untouched.
        old = bed.moved_dirs("old")
        assert len(old) == 1 and old[0].stat().st_ino == old_inode
        assert bed.marker(old[0]) == marker
        assert bed.marker() is None
        assert bed.moved_dirs("failed") == []
        assert str(old[0]) in job.detail


async def test_status_answers_while_a_rebuild_runs(pg_binaries: PgBinaries) -> None:
    with rebuild_bed(pg_binaries) as bed:
        async with opened(bed.config(max_rate="4M")) as runtime, chat_for(runtime) as chat:
            service = runtime.services.rebuild
            report, plan = await service.preflight(REPLICA)
            assert report.ok
            await service.start(plan, ADMIN_ID, ADMIN_ID)
            await wait_for_step(runtime, "basebackup")

            reply = await reply_call(chat, VIEWER_ID, "/status")
            still = service.progress_of(CLUSTER, REPLICA)
            assert still is not None and still.state is RebuildState.RUNNING
            assert "main: 0/1 replicas streaming" in text_of(reply)

            job = await service.wait(CLUSTER, REPLICA)
            assert job is not None and job.state is RebuildState.SUCCEEDED
            rows = await audit_of(runtime)
            status_row = next(r for r in rows if r.command == "status")
            finish_row = next(r for r in rows if r.command == "rebuild.finish")
            assert status_row.outcome is Outcome.OK
            assert status_row.id < finish_row.id, "the /status reply waited for the rebuild"

            # Afterwards the admin removes the old data directory (and nothing else).
            old = bed.moved_dirs("old")
            assert len(old) == 1
            mark = chat.send(ADMIN_ID, "/rebuild pg2 --cleanup")
            question = await next_message(chat.api, ADMIN_ID, mark, "Delete")
            assert str(old[0]) in text_of(question)
            mark = press(chat.api, ADMIN_ID, button_data(question)[0], question)
            done = await next_message(chat.api, ADMIN_ID, mark, "removed", method="editMessageText")
            assert text_of(done) == f"✅ removed {old[0]} on pg2"
        assert not old[0].exists()
        assert (bed.replica.data_dir / "PG_VERSION").exists()
        assert await probe(bed.streams)
