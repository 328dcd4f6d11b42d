"""/rebuild in the chat: who may do what, the confirmation button's rules, cancel, and a bot
that dies in the middle of a backup.

Everything goes through the real PTB client and the fake Bot API; the last test runs the bot
as a separate process (``replbot run``) and SIGKILLs it by PID mid-backup.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import TOKEN_ENV, load_config
from bot.models import AuditEntry, Outcome, RebuildState
from bot.sandbox import PgBinaries
from tests.conftest import (
    ADMIN_ID,
    GROUP_CHAT_ID,
    LEDGER,
    OPERATOR_ID,
    VIEWER_ID,
    short_tmpdir,
)
from tests.fakebotapi import FakeBotApi
from tests.integration._helpers import wait_until
from tests.integration.rebuild_bed import (
    CLUSTER,
    REPLICA,
    SECOND_ADMIN_ID,
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


@pytest.fixture
async def bed(pg_binaries: PgBinaries) -> AsyncIterator[RebuildBed]:
    with rebuild_bed(pg_binaries) as started:
        yield started


@pytest.fixture
async def newest_bed(newest_pg_binaries: PgBinaries) -> AsyncIterator[RebuildBed]:
    """A bed on the newest major only, for the chat's refusals and races (whose rules do not
    depend on the major; the rebuild itself runs on every major in test_rebuild_success)."""
    with rebuild_bed(newest_pg_binaries) as started:
        yield started


async def say(api: FakeBotApi, user_id: int, text: str, contains: str = "") -> str:
    """``user_id`` types ``text`` in the group; the text of the matching reply."""
    mark = api.mark()
    api.push_message(user_id, text, chat_id=GROUP_CHAT_ID, chat_type="group")
    return text_of(await next_message(api, GROUP_CHAT_ID, mark, contains=contains))


async def test_refusals_confirmation_rules_and_cancel_in_the_chat(newest_bed: RebuildBed) -> None:
    bed = newest_bed
    marker = bed.put_marker()
    inode = bed.replica.data_dir.stat().st_ino
    postmaster = bed.pgset.postmaster_pid(REPLICA)
    config = bed.config(max_rate="1M", confirm_timeout=5)
    async with opened(config) as runtime, chat_for(runtime) as chat:
        api, service = chat.api, runtime.services.rebuild

        # An operator's dry run prints the checks and the exact plan, and changes nothing.
        text = await say(api, OPERATOR_ID, "/rebuild pg2 --dry-run")
        assert text.startswith("ℹ️ dry run: nothing was changed\n✅ preflight of pg2 passed")
        assert "plan for main/pg2 on 127.0.0.1:" in text
        assert f"--pgdata={bed.replica.data_dir} " in text and "--max-rate=1M" in text
        assert f"mv -- {bed.replica.data_dir} {bed.replica.data_dir}.replbot-old-" in text
        assert bed.replica.data_dir.stat().st_ino == inode and bed.marker() == marker
        assert bed.pgset.postmaster_pid(REPLICA) == postmaster
        assert bed.moved_dirs("old") == [] and await probe(bed.slot_names) == [REPLICA]
        assert await service.latest_job(CLUSTER, REPLICA) is None

        # Roles: a viewer may not even dry-run; an operator may not rebuild.
        text = await say(api, VIEWER_ID, "/rebuild pg2 --dry-run")
        assert text == "❌ /rebuild needs the operator role; you are viewer"
        text = await say(api, OPERATOR_ID, "/rebuild pg2")
        assert text == "❌ /rebuild needs the admin role; you are operator"
        # The primary is never a target.
        text = await say(api, ADMIN_ID, "/rebuild pg1")
        assert text == "❌ pg1 is the primary of main; only replicas can be rebuilt"

        # A stale confirmation: pressed after confirm_timeout (5 s).
        stale_message, stale = await ask_and_confirm(api, ADMIN_ID, GROUP_CHAT_ID)
        await asyncio.sleep(5.5)
        mark = press(api, ADMIN_ID, stale, stale_message)
        expired = await next_message(api, GROUP_CHAT_ID, mark, "expired")
        assert text_of(expired) == "❌ this confirmation expired; run the command again"

        # A foreign press: another admin cannot confirm alice's request.
        confirm, data = await ask_and_confirm(api, ADMIN_ID, GROUP_CHAT_ID)
        mark = press(api, SECOND_ADMIN_ID, data, confirm)
        foreign = await next_message(api, GROUP_CHAT_ID, mark, "only the user who asked")
        assert text_of(foreign) == "❌ only the user who asked may press this button"
        assert await service.latest_job(CLUSTER, REPLICA) is None

        # Alice confirms; pressing the same button again is a replay.
        mark = press(api, ADMIN_ID, data, confirm)
        await next_message(api, GROUP_CHAT_ID, mark, "⏳ rebuilding main/pg2")
        mark = press(api, ADMIN_ID, data, confirm)
        replay = await next_message(api, GROUP_CHAT_ID, mark, "already used")
        assert text_of(replay) == "❌ this button was already used (confirmed)"

        # While the backup runs, a second /rebuild is refused naming the job and its progress.
        await wait_for_step(runtime, "basebackup")
        text = await say(api, SECOND_ADMIN_ID, "/rebuild pg2", "refused")
        assert text.startswith("❌ rebuild of pg2 refused: already in progress (job 1, running, ")
        job = await service.latest_job(CLUSTER, REPLICA)
        assert job is not None and job.requested_by == ADMIN_ID and job.confirmed_by == ADMIN_ID

        # --cancel stops pg_basebackup and rolls back.
        mark = api.mark()
        text = await say(api, ADMIN_ID, "/rebuild pg2 --cancel", "cancelling")
        assert text == "⚠️ cancelling the rebuild of pg2: stopping pg_basebackup and rolling back"
        outcome = await next_message(api, GROUP_CHAT_ID, mark, "rebuild failed, rolled back")
        job = await service.wait(CLUSTER, REPLICA)
        assert job is not None and job.state is RebuildState.ROLLED_BACK, job
        assert "cancelled by alice-admin" in text_of(outcome)
        assert job.detail.startswith(
            "progress.cancelled by=alice-admin; progress.rollback.old_restored"
        )

        rows = await audit_of(runtime)
        refused = [(r.user_id, r.command, r.reason) for r in rows if r.outcome is Outcome.REFUSED]
        assert refused == [
            # the audit keeps the refusal's language-neutral phrase (the reply is worded)
            (VIEWER_ID, "rebuild", "error.auth.role needed=operator role=viewer what=/rebuild"),
            (OPERATOR_ID, "rebuild", "error.auth.role needed=admin role=operator what=/rebuild"),
            (ADMIN_ID, "rebuild", "error.rebuild.primary cluster=main node=pg1"),
            (ADMIN_ID, "button", "error.confirm.expired"),
            (SECOND_ADMIN_ID, "button", "error.confirm.foreign"),
            (ADMIN_ID, "button", "error.confirm.used_confirmed"),
            (SECOND_ADMIN_ID, "rebuild", refused_busy_reason(rows)),
        ]
        assert any(r.command == "rebuild" and r.reason == "cancel of job 1 requested" for r in rows)
        assert [r.outcome for r in rows if r.command == "rebuild.confirm"] == [
            Outcome.INTENT,
            Outcome.OK,
        ]

    # The end state: the old replica is back and streams, the partial copy is kept.
    assert bed.replica.data_dir.stat().st_ino == inode and bed.marker() == marker
    assert bed.moved_dirs("old") == []
    assert len(bed.moved_dirs("failed")) == 1
    await probe(bed.wait_streaming, 30)
    assert await probe(bed.slot_names) == [REPLICA]
    assert await probe(bed.basebackup_pids) == []


def refused_busy_reason(rows: list[AuditEntry]) -> str:
    """The reason of the audit row of the refused second /rebuild (it names the progress)."""
    busy = [r.reason for r in rows if r.reason.startswith("error.rebuild.busy ")]
    assert len(busy) == 1, busy
    assert busy[0].startswith("error.rebuild.busy job=1 node=pg2 state=running where=")
    return str(busy[0])


# --------------------------------------------------------------------------- the bot dies


def replbot_argv() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m bot``."""
    script = shutil.which("replbot", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "bot"]


class BotProcess:
    """``replbot run --config FILE`` as a child process; stopped only by its own PID."""

    def __init__(self, config: Path, environ: dict[str, str], log: Path) -> None:
        self.config = config
        self.environ = environ
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV and not k.startswith("PG")}
        env.update(self.environ)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*replbot_argv(), "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd="/",
            )

    def send(self, sig: signal.Signals) -> int:
        """Send ``sig`` to the process and wait for its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.proc.wait(60)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def job_row(audit: Path) -> tuple[str, str] | None:
    """(state, step) of pg2's newest job, read from the bot's SQLite file."""
    db = sqlite3.connect(audit)
    try:
        row = db.execute(
            "SELECT state, step FROM rebuild_jobs WHERE node = ? ORDER BY id DESC LIMIT 1",
            (REPLICA,),
        ).fetchone()
    finally:
        db.close()
    return (str(row[0]), str(row[1])) if row else None


def locks_held(audit: Path) -> int:
    """Jobs in a lock-holding state, read from the bot's SQLite file."""
    db = sqlite3.connect(audit)
    try:
        held = [s.value for s in RebuildState if s.holds_lock]
        marks = ", ".join("?" for _ in held)
        row = db.execute(
            f"SELECT count(*) FROM rebuild_jobs WHERE state IN ({marks})",
            held,
        ).fetchone()
    finally:
        db.close()
    return int(row[0])


async def test_bot_killed_mid_backup_is_announced_after_restart_and_rolled_back(
    bed: RebuildBed,
) -> None:
    marker = bed.put_marker()
    inode = bed.replica.data_dir.stat().st_ino
    api = FakeBotApi()
    LEDGER.secrets.add(api.token)
    LEDGER.fake_apis.append(api)
    api.start()
    audit = short_tmpdir("rba") / "audit.sqlite3"
    LEDGER.audit_paths.append(audit)
    config = bed.base / "replbot.toml"
    config.write_text(bed.config_text(audit, api=api, alert_chat_ids=(ADMIN_ID,), max_rate="1M"))
    load_config(config, bed.environ())  # the file passes the real validator
    first = BotProcess(config, bed.environ(), bed.base / "bot-1.log")
    second = BotProcess(config, bed.environ(), bed.base / "bot-2.log")
    try:
        first.start()
        await api.await_polling(timeout=60)
        confirm, data = await ask_and_confirm(api, ADMIN_ID)
        mark = press(api, ADMIN_ID, data, confirm)
        await next_message(
            api, ADMIN_ID, mark, "pg_basebackup from pg1", method="editMessageText", timeout=60
        )
        await wait_until(bed.basebackup_pids, "pg_basebackup to run", 30)
        await wait_until(lambda: bed.bytes_streamed() > 0, "the backup to copy data", 30)

        assert first.send(signal.SIGKILL) == -signal.SIGKILL
        # The SSH connection died with the bot: the PTY hang-up ends pg_basebackup entirely.
        await wait_until(lambda: not bed.basebackup_pids(), "pg_basebackup to die", 30)
        await wait_until(lambda: not bed.basebackup_walsenders(), "its walsenders to end", 30)
        assert job_row(audit) == ("running", "basebackup")

        mark = api.mark()
        second.start()
        told = await next_message(
            api, ADMIN_ID, mark, "replbot restarted while rebuilding", timeout=60
        )
        text = text_of(told)
        old_dir = bed.moved_dirs("old")[0]
        assert "main/pg2 (job 1). The node stays locked." in text
        assert "interrupted in step basebackup; no pg_basebackup; server stopped; " in text
        assert f"directories: {bed.replica.data_dir}, {old_dir}" in text
        assert "/rebuild pg2 --rollback" in text
        assert job_row(audit) == ("interrupted", "basebackup")
        assert locks_held(audit) == 1

        mark = api.mark()
        api.push_message(ADMIN_ID, "/rebuild pg2")
        busy = await next_message(api, ADMIN_ID, mark, "refused")
        assert text_of(busy) == (
            "❌ rebuild of pg2 refused: already in progress (job 1, interrupted, basebackup)"
        )

        mark = api.mark()
        api.push_message(ADMIN_ID, "/rebuild pg2 --rollback")
        question = await next_message(api, ADMIN_ID, mark, "Roll back")
        assert "rebuild job 1 of main/pg2 (interrupted, step basebackup)" in text_of(question)
        assert job_row(audit) == ("interrupted", "basebackup"), "rolled back before the press"
        mark = press(api, ADMIN_ID, button_data(question)[0], question)
        await next_message(
            api, ADMIN_ID, mark, "rolling back the rebuild of pg2", method="editMessageText"
        )
        outcome = await next_message(api, ADMIN_ID, mark, "rebuild failed, rolled back", timeout=90)
        assert "interrupted rebuild; old data directory restored" in text_of(outcome)
        assert second.send(signal.SIGTERM) == 0
    finally:
        for bot in (first, second):
            if bot.proc is not None:
                bot.send(signal.SIGKILL)
            LEDGER.texts.append(bot.output())
        api.stop()

    assert job_row(audit) == ("rolled_back", "rollback")
    assert locks_held(audit) == 0
    assert bed.replica.data_dir.stat().st_ino == inode and bed.marker() == marker
    assert bed.moved_dirs("old") == []
    failed = bed.moved_dirs("failed")
    assert len(failed) == 1 and (failed[0] / "PG_VERSION").exists()
    await probe(bed.wait_streaming, 30)
    assert await probe(bed.slot_names) == [REPLICA]
    assert await probe(bed.basebackup_pids) == []


async def test_two_admins_confirming_at_once_start_exactly_one_job(newest_bed: RebuildBed) -> None:
    bed = newest_bed
    config = bed.config()
    async with opened(config) as runtime, chat_for(runtime) as chat:
        api, service = chat.api, runtime.services.rebuild
        alice_message, alice = await ask_and_confirm(api, ADMIN_ID, GROUP_CHAT_ID)
        bob_message, bob = await ask_and_confirm(api, SECOND_ADMIN_ID, GROUP_CHAT_ID)
        mark = press(api, ADMIN_ID, alice, alice_message)
        press(api, SECOND_ADMIN_ID, bob, bob_message)

        # The lock lets one confirmation through; the other is refused.
        refused = await next_message(api, GROUP_CHAT_ID, mark, "already in progress")
        job = await service.wait(CLUSTER, REPLICA)
        outcome = await next_message(api, GROUP_CHAT_ID, mark, "✅ rebuilt main/pg2", timeout=30)
        assert job is not None and job.id == 1 and job.state is RebuildState.SUCCEEDED, job
        assert "rebuild of pg2 refused: already in progress (job 1, running" in text_of(refused)
        assert job_count(config.audit.path) == 1

        # The chat tells the same story: one confirmation is marked confirmed, and each
        # "starting the rebuild" message is a job's progress message that ends with the
        # outcome, not one that stays "starting" forever.
        confirmations = {
            name: api.message(GROUP_CHAT_ID, int(message.result["message_id"]))
            for name, message in (("alice", alice_message), ("bob", bob_message))
        }
        marked = [n for n, m in confirmations.items() if m and "confirmed by" in m["text"]]
        # Each "starting the rebuild" message is a job's progress message: it must end with
        # the outcome, not stay "starting" forever.
        starting = [
            c
            for c in api.calls_of("sendMessage")
            if c.ok and "⏳ rebuilding main/pg2" in text_of(c) and api.calls.index(c) > mark
        ]
        finals = {
            int(message["message_id"]): message["text"]
            for c in starting
            if (message := api.message(GROUP_CHAT_ID, int(c.result["message_id"]))) is not None
        }
        assert all(text.startswith("✅ rebuilt main/pg2") for text in finals.values()), finals
        assert len(marked) == 1, f"confirmations marked confirmed: {marked}"
        assert text_of(outcome).startswith("✅ rebuilt main/pg2")
    assert await probe(bed.streams)


def job_count(audit: Path) -> int:
    """Number of rebuild jobs ever created, read from the bot's SQLite file."""
    db = sqlite3.connect(audit)
    try:
        return int(db.execute("SELECT count(*) FROM rebuild_jobs").fetchone()[0])
    finally:
        db.close()


async def test_a_plan_that_changed_between_question_and_press_is_not_run(
    newest_bed: RebuildBed,
) -> None:
    bed = newest_bed
    # The replica is down and its slot gone: the plan shown starts with "create slot pg2".
    await probe(bed.pgset.stop_node, REPLICA)
    await probe(bed.psql, "pg1", "SELECT pg_catalog.pg_drop_replication_slot('pg2')")
    config = bed.config()
    async with opened(config) as runtime, chat_for(runtime) as chat:
        api, service = chat.api, runtime.services.rebuild
        message, data = await ask_and_confirm(api, ADMIN_ID, GROUP_CHAT_ID)
        # Someone creates the slot by hand before the admin presses: the plan is now another.
        await probe(
            bed.psql, "pg1", "SELECT pg_catalog.pg_create_physical_replication_slot('pg2', true)"
        )
        mark = press(api, ADMIN_ID, data, message)
        refused = text_of(await next_message(api, GROUP_CHAT_ID, mark, "the plan changed"))
        assert refused.startswith("❌ rebuild of pg2 not started: the plan changed"), refused
        assert "create slot" not in refused  # the plan as it is now is shown
        assert await service.latest_job(CLUSTER, REPLICA) is None
        assert job_count(config.audit.path) == 0
        assert bed.replica.data_dir.is_dir()
