"""/repair end to end on a real primary + replica over a real sshd, through the chat.

Each test breaks pg2 the way the issue describes — a plain stop, a missing standby.signal,
a max_worker_processes lower than the primary's — and proves that the chosen path mends it:
the replica streams again as seen by the primary (walsender on the slot), by the replica
(walreceiver) and by the bot (/status). A plan that changed between approval and press is
refused, and a failure mid-plan ends undone with the original postgresql.auto.conf back.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.adapters.telegram_notifier import TelegramNotifier
from bot.models import Outcome, RebuildState
from bot.sandbox import PgBinaries
from bot.services.repair.models import PathName
from tests.conftest import ADMIN_ID, OPERATOR_ID, VIEWER_ID, TelegramHarness
from tests.fakebotapi import FakeBotApi, RecordedCall
from tests.integration._helpers import audit_rows, reply_call
from tests.integration.rebuild_bed import (
    CLUSTER,
    REPLICA,
    RebuildBed,
    audit_of,
    button_data,
    chat_for,
    next_message,
    opened,
    press,
    probe,
    rebuild_bed,
    text_of,
)

pytestmark = pytest.mark.integration
MONITOR = '[monitor]\ninterval = "0.2s"\ntimeout = "2s"\nrepeat_interval = "10min"\n'


async def ask_repair(api: FakeBotApi, user_id: int = ADMIN_ID) -> tuple[str, RecordedCall, str]:
    """``/repair pg2`` by ``user_id``: the proposal's text, the confirmation and its data."""
    mark = api.mark()
    api.push_message(user_id, f"/repair {REPLICA}", chat_id=user_id, chat_type="private")
    proposal = await next_message(api, user_id, mark, contains=f"repair of {REPLICA}")
    confirm = await next_message(api, user_id, mark, contains="Run the ")
    data = button_data(confirm)
    assert data and data[0].startswith("cf:"), confirm.params
    return text_of(proposal), confirm, data[0]


async def streams_from_every_side(bed: RebuildBed, chat: TelegramHarness) -> None:
    """The primary's walsender on slot pg2 streams under pg2, the replica's receiver streams,
    and /status says so."""
    await probe(bed.wait_streaming)
    assert (await probe(bed.slot_holder)).startswith(f"{REPLICA}|streaming|")
    assert await probe(bed.receiver_status) == "streaming"
    status = text_of(await reply_call(chat, VIEWER_ID, "/status"))
    assert "main: 1/1 replicas streaming" in status, status


async def test_resume_after_a_plain_stop(pg_binaries: PgBinaries) -> None:
    with rebuild_bed(pg_binaries) as bed:
        await probe(bed.pgset.stop_node, REPLICA)
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            api = chat.api
            proposal, confirm, data = await ask_repair(api)
            assert "repair of pg2: resume" in proposal, proposal
            assert "pg_controldata: shut down in recovery" in proposal
            assert "1. start pg2" in proposal and "2. wait until pg2 streams" in proposal
            mark = press(api, ADMIN_ID, data, confirm)
            await next_message(api, ADMIN_ID, mark, "✅ repaired main/pg2 (resume)", timeout=90)
            job = await runtime.services.repair.wait(CLUSTER, REPLICA)  # type: ignore[union-attr]
            assert job is not None and job.state is RebuildState.SUCCEEDED
            assert job.kind == "repair.resume" and job.confirmed_by == ADMIN_ID
            await streams_from_every_side(bed, chat)
            rows = [r for r in await audit_of(runtime) if r.user_name == f"repair#{job.id}"]
            assert [(r.command, r.outcome) for r in rows] == [
                ("repair.resume.begin", Outcome.OK),
                ("repair.resume.start", Outcome.INTENT),
                ("repair.resume.start", Outcome.OK),
                ("repair.resume.verify", Outcome.INTENT),
                ("repair.resume.verify", Outcome.OK),
                ("repair.resume.finish", Outcome.OK),
            ]


async def test_resume_recreates_a_missing_standby_signal(pg_binaries: PgBinaries) -> None:
    with rebuild_bed(pg_binaries) as bed:
        await probe(bed.pgset.stop_node, REPLICA)
        signal = bed.replica.data_dir / "standby.signal"
        signal.unlink()
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            service = runtime.services.repair
            assert service is not None
            proposal = await service.diagnose(REPLICA)
            assert proposal.chosen is PathName.RESUME
            assert not proposal.diagnosis.standby_signal
            assert proposal.plan is not None
            assert [s.key for s in proposal.plan.steps] == ["standby_signal", "start", "verify"]
            await service.start(REPLICA, CLUSTER, proposal.tag, proposal.digest, ADMIN_ID, ADMIN_ID)
            job = await service.wait(CLUSTER, REPLICA)
            assert job is not None and job.state is RebuildState.SUCCEEDED, job
            assert signal.exists()
            assert bed.psql(REPLICA, "SELECT pg_is_in_recovery()") == "t"
            await streams_from_every_side(bed, chat)


async def test_parameters_raises_max_worker_processes_to_the_primarys(
    pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(pg_binaries) as bed:
        await probe(bed.pgset.lower_param, REPLICA)
        assert not bed.pgset.is_running(REPLICA)
        auto_conf = bed.replica.data_dir / "postgresql.auto.conf"
        original = auto_conf.read_text()
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            api = chat.api
            proposal, confirm, data = await ask_repair(api)
            assert "repair of pg2: parameters" in proposal, proposal
            assert "max_worker_processes = 4 is a lower setting than on the primary" in proposal
            assert "max_worker_processes = 6" in proposal  # the exact line, before it is written
            mark = press(api, ADMIN_ID, data, confirm)
            await next_message(api, ADMIN_ID, mark, "✅ repaired main/pg2 (parameters)", timeout=90)
            await streams_from_every_side(bed, chat)
        assert bed.psql(REPLICA, "SHOW max_worker_processes") == "6"
        backups = list(bed.replica.data_dir.glob("postgresql.auto.conf.replbot-*"))
        assert len(backups) == 1 and backups[0].read_text() == original
        # every other line of the file is as it was
        kept = [line for line in original.splitlines() if "max_worker_processes" not in line]
        assert [
            line for line in auto_conf.read_text().splitlines() if "max_worker" not in line
        ] == kept


async def test_a_plan_changed_between_approval_and_press_is_refused(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        await probe(bed.pgset.stop_node, REPLICA)
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            api = chat.api
            _, confirm, data = await ask_repair(api)
            await probe(bed.pgset.start_node, REPLICA)  # someone starts it meanwhile
            await probe(bed.wait_streaming)
            mark = press(api, ADMIN_ID, data, confirm)
            refused = await next_message(api, ADMIN_ID, mark, "not started: the plan changed")
            assert "- start: " in text_of(refused), text_of(refused)
            assert await runtime.services.rebuild.latest_job(CLUSTER, REPLICA) is None
            rows = await audit_rows(chat, 3)  # written after the reply
            assert ("repair.confirm", Outcome.REFUSED) in [(r.command, r.outcome) for r in rows]


async def test_a_failure_mid_plan_is_undone_and_the_original_file_put_back(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        await probe(bed.pgset.lower_param, REPLICA)
        auto_conf = bed.replica.data_dir / "postgresql.auto.conf"
        original = auto_conf.read_text()
        config = bed.config(start_command="/bin/false")  # the admin's start command fails
        async with opened(config) as runtime, chat_for(runtime) as chat:
            api = chat.api
            _, confirm, data = await ask_repair(api)
            mark = press(api, ADMIN_ID, data, confirm)
            failed = await next_message(api, ADMIN_ID, mark, "❌ repair of main/pg2 failed, undone")
            job = await runtime.services.repair.wait(CLUSTER, REPLICA)  # type: ignore[union-attr]
            assert job is not None and job.state is RebuildState.ROLLED_BACK, job
            assert "start: exit status 1" in text_of(failed)
            shown = [text_of(c) for c in api.calls_of("editMessageText") if c.ok]
            assert any("undone: edit_auto_conf" in t for t in shown), shown
        assert auto_conf.read_text() == original  # the original is back
        backups = list(bed.replica.data_dir.glob("postgresql.auto.conf.replbot-*"))
        assert len(backups) == 1 and backups[0].read_text() == original  # and still kept
        assert bed.replica.data_dir.joinpath("PG_VERSION").exists()


async def test_the_repair_button_of_a_real_alert_posts_the_proposal(
    pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(pg_binaries) as bed:
        config = bed.config(extra=MONITOR, alert_chat_ids=(ADMIN_ID,))
        async with opened(config) as runtime, chat_for(runtime) as chat:
            api = chat.api
            await runtime.start_monitor(TelegramNotifier(api.token, api.base_url, 2.0))
            mark = api.mark()
            await probe(bed.pgset.stop_node, REPLICA)
            alert = await next_message(
                api, ADMIN_ID, mark, "replica pg2 is not streaming", timeout=60
            )
            repair = [d for d in button_data(alert) if d.startswith("al:repair:")]
            assert repair, button_data(alert)  # (node down may come in the same message)

            mark = press(api, OPERATOR_ID, repair[0], alert)
            refusal = await next_message(api, ADMIN_ID, mark, "only an admin may repair pg2")
            assert api.calls.index(refusal) > mark
            assert await runtime.services.rebuild.latest_job(CLUSTER, REPLICA) is None

            mark = press(api, ADMIN_ID, repair[0], alert)
            proposal = await next_message(api, ADMIN_ID, mark, "repair of pg2: resume")
            confirm = await next_message(api, ADMIN_ID, mark, "Run the resume repair of pg2")
            assert button_data(confirm)[0].startswith("cf:")
            assert "1. start pg2" in text_of(proposal)
            await runtime.stop_monitor()
            wanted = {
                ("alert.repair", Outcome.REFUSED, OPERATOR_ID),
                ("alert.repair", Outcome.OK, ADMIN_ID),
            }
            for _ in range(200):  # the press's audit row is written after its replies
                rows = {(r.command, r.outcome, r.user_id) for r in await audit_of(runtime)}
                if wanted <= rows:
                    break
                await asyncio.sleep(0.05)
            assert wanted <= rows, rows


async def test_wal_gone_from_the_primary_offers_the_rebuild(newest_pg_binaries: PgBinaries) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        await probe(bed.pgset.stop_node, REPLICA)
        await probe(bed.psql, "pg1", "SELECT pg_drop_replication_slot('pg2')")
        await probe(bed.psql, "pg1", "CREATE TABLE churn (x int)")
        for _ in range(4):  # the WAL pg2 needs is recycled once no slot holds it
            await probe(
                bed.psql, "pg1", "INSERT INTO churn VALUES (1); SELECT pg_switch_wal(); CHECKPOINT"
            )
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            api = chat.api
            mark = api.mark()
            api.push_message(ADMIN_ID, f"/repair {REPLICA}", chat_id=ADMIN_ID, chat_type="private")
            proposal = await next_message(api, ADMIN_ID, mark, contains="repair of pg2")
            assert "repair of pg2: full (/rebuild)" in text_of(proposal), text_of(proposal)
            assert "GONE from the primary" in text_of(proposal)
            await next_message(api, ADMIN_ID, mark, contains="needs a full copy")
            confirm = await next_message(api, ADMIN_ID, mark, contains="Replace the data of")
            assert button_data(confirm)[0].startswith("cf:")
            assert await runtime.services.rebuild.latest_job(CLUSTER, REPLICA) is None
