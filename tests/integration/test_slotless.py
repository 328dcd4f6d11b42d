"""Replicas without a slot, end to end on real PostgreSQL (issue 12).

A replica made without ``--slot`` is flagged by /status and /check; the monitor warns while
the WAL it needs is about to be recycled and goes critical once it is; /attachslot gives it a
slot the primary then keeps WAL for, and is refused once the WAL is gone; /detachslot takes a
slot away and drops it. Each test has its own set (they stop nodes and change settings).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.app import Runtime, open_runtime, redactor_for
from bot.config import parse_config
from bot.logsetup import install_redaction
from bot.models import AlertRule, Outcome, Severity
from bot.sandbox import LocalReplicationSet, PgBinaries
from handlers.console import given_lines, run_console
from tests.conftest import (
    ADMIN_ID,
    LEDGER,
    OPERATOR_ID,
    VIEWER_ID,
    config_toml,
    make_config,
    short_tmpdir,
)
from tests.integration._helpers import (
    audit_rows,
    lsn_to_int,
    plain,
    reply_call,
    scratch_set,
    telegram_for,
    wait_until,
)
from tests.integration.slotless_bed import (
    SlotlessReplicationSet,
    grant_slot_privileges,
    slotless_set,
)

pytestmark = pytest.mark.integration

MONITOR = """
[monitor]
interval = "0.2s"
timeout = "2s"
"""


def outcomes(rows: list) -> list[tuple[int | None, str, Outcome]]:  # type: ignore[type-arg]
    return [(r.user_id, r.command, r.outcome) for r in rows]


async def _runtime(rset: LocalReplicationSet, extra: str = "") -> Runtime:
    base = short_tmpdir("rba")
    config = make_config(rset, base / "audit.sqlite3", extra)
    LEDGER.audit_paths.append(config.audit.path)
    redactor = redactor_for(config)
    install_redaction(redactor)
    runtime = await open_runtime(config, redactor)
    LEDGER.secrets.update(redactor.secrets)
    return runtime


async def console(runtime: Runtime, user_id: int, *lines: str) -> list[str]:
    """Run ``lines`` through the console transport as ``user_id``; the printed output."""
    out: list[str] = []
    await run_console(runtime.dispatcher, user_id, f"user{user_id}", given_lines(lines), out.append)
    return out


def walsender_slot(rset: LocalReplicationSet, name: str = "pg2") -> str:
    """'state|slot' of the primary's walsender for ``name`` (slot via active_pid)."""
    return rset.psql(
        "pg1",
        "SELECT r.state || '|' || coalesce(s.slot_name, '') FROM pg_stat_replication r "
        "LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid "
        f"WHERE r.application_name = '{name}'",
    )


@pytest.fixture
async def slotless(pg_binaries: PgBinaries) -> AsyncIterator[SlotlessReplicationSet]:
    """A set of its own, for the tests that stop pg2, recycle WAL or attach a slot."""
    with slotless_set(pg_binaries) as rset:
        yield rset


@pytest.fixture(scope="module")
def module_slotless(pg_binaries: PgBinaries) -> Iterator[SlotlessReplicationSet]:
    with slotless_set(pg_binaries) as rset:
        yield rset


@pytest.fixture
def shared_slotless(module_slotless: SlotlessReplicationSet) -> Iterator[SlotlessReplicationSet]:
    """One set per major for the tests that only read it (or take the bot's pg_monitor
    membership away): the membership is given back and the set checked after each test."""
    yield module_slotless
    module_slotless.psql("pg1", f"GRANT pg_monitor TO {module_slotless.bot_user}")
    module_slotless.wait_streaming("pg2")
    assert module_slotless.psql("pg1", "SELECT count(*) FROM pg_replication_slots") == "0"


async def test_status_and_check_flag_a_replica_streaming_without_a_slot(
    shared_slotless: SlotlessReplicationSet,
) -> None:
    slotless = shared_slotless
    assert walsender_slot(slotless) == "streaming|"
    async with telegram_for(slotless) as tg:
        status = plain(await reply_call(tg, VIEWER_ID, "/status"))
        assert re.search(r"^✅ pg2 replica · streaming$", status, re.M), status
        line = re.search(r"^\s+⚠️ no slot: .*$", status, re.M)
        assert line, status
        assert "ahead of the oldest WAL the primary keeps" in line.group(0)
        assert "/attachslot pg2" in line.group(0)

        check = plain(await reply_call(tg, VIEWER_ID, "/check"))
        item = re.search(r"^⚠️ pg2 · slot: (.*)$", check, re.M)
        assert item, check
        assert "streams without a replication slot" in item.group(1)
        assert "wal_keep_size = 64MB" in item.group(1)
        assert f"oldest WAL in pg_wal {slotless.oldest_segment()}" in item.group(1)
        assert "archive_mode = off" in item.group(1)
        assert item.group(1).endswith(
            "→ /attachslot pg2 (the primary then keeps the WAL until the replica has it)"
        )
        rows = await audit_rows(tg, 2)
        assert outcomes(rows) == [
            (VIEWER_ID, "status", Outcome.OK),
            (VIEWER_ID, "check", Outcome.OK),
        ]


async def test_check_says_so_when_the_bot_may_not_list_pg_wal(
    shared_slotless: SlotlessReplicationSet,
) -> None:
    slotless = shared_slotless
    slotless.psql("pg1", "REVOKE pg_monitor FROM replbot")
    runtime = await _runtime(slotless)
    try:
        out = "\n".join(await console(runtime, VIEWER_ID, "/check"))
    finally:
        await runtime.close()
    assert re.search(
        r"^⚠️ pg2 · slot: .*oldest WAL in pg_wal unknown: permission denied for "
        r"pg_ls_waldir\(\)",
        out,
        re.M,
    ), out


async def test_the_monitor_warns_before_a_stopped_replicas_wal_is_recycled_then_goes_critical(
    slotless: SlotlessReplicationSet,
) -> None:
    runtime = await _runtime(slotless, MONITOR)
    try:
        await runtime.monitor.start()
        await runtime.monitor.wait_rounds(3)
        assert [a for a in runtime.alerts.firing() if a.rule is AlertRule.SLOTLESS_WAL] == []
        # an idle primary with a caught-up replica: still nothing after many polls
        await runtime.monitor.wait_rounds(10)
        assert [a for a in runtime.alerts.firing() if a.rule is AlertRule.SLOTLESS_WAL] == []

        slotless.stop_node("pg2")
        seen: list[Severity] = []
        for _ in range(30):
            slotless.write_and_recycle()
            await runtime.monitor.wait_rounds(4)
            firing = [a for a in runtime.alerts.firing() if a.rule is AlertRule.SLOTLESS_WAL]
            if firing and (not seen or seen[-1] is not firing[0].severity):
                seen.append(firing[0].severity)
            if seen and seen[-1] is Severity.CRITICAL:
                break
        assert seen == [Severity.WARNING, Severity.CRITICAL], seen
        (alert,) = [a for a in runtime.alerts.firing() if a.rule is AlertRule.SLOTLESS_WAL]
        assert alert.node == "pg2" and alert.cluster == "main"
        assert alert.figures["connected"] is False
        assert isinstance(alert.figures["margin"], int) and alert.figures["margin"] < 0

        # The replica comes back but cannot stream: /attachslot refuses and points to /rebuild.
        slotless.start_node("pg2")
        out = "\n".join(await console(runtime, ADMIN_ID, "/attachslot pg2", "/status", "/check"))
        assert re.search(
            r"^❌ pg2 needs WAL from \S+, but the oldest WAL on pg1 is segment [0-9A-F]{24}: it "
            r"can no longer catch up by streaming; rebuild it \(/rebuild pg2\)$",
            out,
            re.M,
        ), out
        assert "the WAL it needs from" in out and "is gone from the primary: /rebuild pg2" in out
        assert re.search(
            r"^❌ pg2 · slot: no slot, and the WAL it needs .* → it can no longer "
            r"catch up by streaming: /rebuild pg2$",
            out,
            re.M,
        ), out
        assert slotless.psql("pg1", "SELECT count(*) FROM pg_replication_slots") == "0"
        rows = await runtime.services.audit.recent(10)
        attach = [r for r in rows if r.command == "attachslot"]
        assert [r.outcome for r in attach] == [Outcome.REFUSED]
        assert attach[0].reason.startswith("error.slotless.wal_lost ")
    finally:
        await runtime.close()


async def test_attachslot_through_telegram_puts_the_walsender_on_a_slot_that_keeps_wal(
    slotless: SlotlessReplicationSet,
) -> None:
    async with telegram_for(slotless) as tg:
        # an operator may look at the plan, but not run it
        dry = plain(await reply_call(tg, OPERATOR_ID, "/attachslot pg2 --dry-run"))
        assert dry.startswith("ℹ️ dry run: nothing was changed"), dry
        assert "[primary] SELECT pg_catalog.pg_create_physical_replication_slot(%s, true)" in dry
        assert "[replica] ALTER SYSTEM SET primary_slot_name = %s   -- params: pg2" in dry
        refused = plain(await reply_call(tg, OPERATOR_ID, "/attachslot pg2"))
        assert refused == "❌ /attachslot needs the admin role; you are operator"
        viewer = plain(await reply_call(tg, VIEWER_ID, "/attachslot pg2 --dry-run"))
        assert viewer == "❌ /attachslot needs the operator role; you are viewer"
        assert slotless.psql("pg1", "SELECT count(*) FROM pg_replication_slots") == "0"

        question = await reply_call(tg, ADMIN_ID, "/attachslot pg2")
        assert plain(question).startswith("⚠️ Give pg2 the slot pg2 on pg1?"), plain(question)
        confirm = question.params["reply_markup"]["inline_keyboard"][0][0]
        assert confirm["text"] == "Attach slot to pg2"
        message_id = question.result["message_id"]
        await audit_rows(tg, 4)  # the question's row is written after the reply
        mark = tg.api.mark()
        tg.api.push_callback(ADMIN_ID, confirm["callback_data"], message_id)
        edit = await tg.api.await_for(
            "editMessageText",
            lambda c: c.params.get("message_id") == message_id,
            after=mark,
            timeout=60,
        )
        text = plain(edit)
        assert text.startswith("✅ main/pg2 streams through slot pg2"), text
        assert 'Add slot = "pg2" to pg2 in the config' in text

        # verified from every side: the primary's walsender holds it, the receiver uses it
        assert walsender_slot(slotless) == "streaming|pg2"
        assert (
            slotless.psql("pg2", "SELECT status || '|' || slot_name FROM pg_stat_wal_receiver")
            == "streaming|pg2"
        )
        status = plain(await reply_call(tg, VIEWER_ID, "/status"))
        assert re.search(r"^✅ pg2 replica · streaming · slot pg2$", status, re.M), status
        assert "no slot" not in status
        check = plain(await reply_call(tg, VIEWER_ID, "/check"))
        assert "pg2 · slot:" not in check

        # the WAL is kept across a stop of the replica
        slotless.stop_node("pg2")
        restart = slotless.psql(
            "pg1", "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pg2'"
        )
        slotless.write_and_recycle(8)
        after = slotless.psql(
            "pg1",
            "SELECT restart_lsn || '|' || wal_status FROM pg_replication_slots "
            "WHERE slot_name = 'pg2'",
        )
        # more WAL than max_wal_size (32MB) is kept for the slot: "extended", never
        # "unreserved" or "lost" (max_slot_wal_keep_size is -1)
        assert after in {f"{restart}|reserved", f"{restart}|extended"}, after
        oldest = slotless.oldest_segment()
        assert (
            lsn_to_int(restart) >= int(oldest[8:16], 16) << 32 | int(oldest[16:], 16) * 16 * 1024**2
        )
        slotless.start_node("pg2")
        await wait_until(
            lambda: walsender_slot(slotless) == "streaming|pg2", "pg2 streaming via its slot"
        )

        rows = await audit_rows(tg, 8)
        assert outcomes(rows) == [
            (OPERATOR_ID, "attachslot", Outcome.OK),
            (OPERATOR_ID, "attachslot", Outcome.REFUSED),
            (VIEWER_ID, "attachslot", Outcome.REFUSED),
            (ADMIN_ID, "attachslot", Outcome.OK),
            (ADMIN_ID, "attachslot.confirm", Outcome.INTENT),
            (ADMIN_ID, "attachslot.confirm", Outcome.OK),
            (VIEWER_ID, "status", Outcome.OK),
            (VIEWER_ID, "check", Outcome.OK),
        ]
        assert rows[0].reason == "dry run: slot pg2"
        assert rows[3].reason == "slot pg2: confirmation requested"
        assert rows[5].args == "pg2 pg2 main"
        assert rows[5].reason == "slot pg2: create_slot, set_primary_slot_name, verify"
        assert rows[1].reason.startswith("error.auth.role needed=admin ")


async def test_detachslot_through_the_console_leaves_no_slot_and_the_replica_streaming(
    pg_binaries: PgBinaries,
) -> None:
    with scratch_set(pg_binaries) as rset:  # the usual set: pg2 streams through slot pg2
        runtime = await _runtime(rset)
        try:
            refused = await console(runtime, OPERATOR_ID, "/detachslot pg2")
            assert refused == ["❌ /detachslot needs the admin role; you are operator"]
            # without the grants, refused before anything changes, naming what is missing
            (no_grant,) = await console(runtime, ADMIN_ID, "/detachslot pg2")
            assert no_grant == (
                "❌ the bot's role may not set primary_slot_name on pg2; it needs GRANT ALTER "
                "SYSTEM ON PARAMETER primary_slot_name, GRANT EXECUTE ON FUNCTION "
                "pg_catalog.pg_reload_conf() (granted on the primary, replicated to the replica)"
            )
            assert walsender_slot(rset) == "streaming|pg2"
            grant_slot_privileges(rset)
            out = await console(runtime, ADMIN_ID, "/detachslot pg2", "1")
            text = "\n".join(out)
            assert text.startswith("⚠️ Take slot pg2 away from pg2 and drop it on pg1?"), text
            assert re.search(
                r"^\(message 1 updated\) ✅ slot pg2 dropped; main/pg2 streams without a slot\.$",
                text,
                re.M,
            ), text
            assert 'Remove slot = "pg2" from pg2 in the config' in text
            assert rset.psql("pg1", "SELECT count(*) FROM pg_replication_slots") == "0"
            assert walsender_slot(rset) == "streaming|"
            assert (
                rset.psql(
                    "pg2",
                    "SELECT status || '|' || coalesce(slot_name, '') FROM pg_stat_wal_receiver",
                )
                == "streaming|"
            )
            status = "\n".join(await console(runtime, VIEWER_ID, "/status"))
            assert re.search(r"^✅ pg2 replica · streaming$", status, re.M), status
            assert "⚠️ no slot:" in status  # the bot now sees it as slotless
            rows = list(reversed(await runtime.services.audit.recent(20)))
            assert outcomes(rows) == [
                (OPERATOR_ID, "detachslot", Outcome.REFUSED),
                (ADMIN_ID, "detachslot", Outcome.REFUSED),
                (ADMIN_ID, "detachslot", Outcome.OK),
                (ADMIN_ID, "detachslot.confirm", Outcome.INTENT),
                (ADMIN_ID, "detachslot.confirm", Outcome.OK),
                (VIEWER_ID, "status", Outcome.OK),
            ]
        finally:
            await runtime.close()


async def test_attachslot_to_a_stopped_replica_edits_its_auto_conf_keeping_the_original(
    slotless: SlotlessReplicationSet,
) -> None:
    base = short_tmpdir("rba")
    replica = slotless.node("pg2")
    text = config_toml(slotless, base / "audit.sqlite3", "REPLBOT_TEST_DB_PASSWORD")
    text = text.replace(
        'name = "pg2"\n',
        'name = "pg2"\nshell = "local"\n'
        f'data_dir = "{replica.data_dir}"\npg_bin_dir = "{slotless.binaries.bindir}"\n',
    )
    config = parse_config(tomllib.loads(text), {"REPLBOT_TEST_DB_PASSWORD": slotless.bot_password})
    LEDGER.audit_paths.append(config.audit.path)
    redactor = redactor_for(config)
    install_redaction(redactor)
    runtime = await open_runtime(config, redactor)
    LEDGER.secrets.update(redactor.secrets)
    auto_conf = replica.data_dir / "postgresql.auto.conf"
    original = auto_conf.read_text()
    assert "primary_slot_name" not in original
    try:
        slotless.stop_node("pg2")
        out = "\n".join(await console(runtime, ADMIN_ID, "/attachslot pg2", "1"))
        assert "1. pg2 is stopped" in out, out
        assert "pg_ctl status -D" in out and "# ok: exit 3" in out, out
        assert re.search(
            r"^\(message 1 updated\) ✅ slot pg2 created for main/pg2, which is stopped: ",
            out,
            re.M,
        ), out
        edited = auto_conf.read_text()
        assert edited.startswith(original.rstrip("\n"))
        assert edited.endswith("primary_slot_name = 'pg2'\n")
        (backup,) = replica.data_dir.glob("postgresql.auto.conf.replbot-*")
        assert backup.read_text() == original
        restart = slotless.psql(
            "pg1",
            "SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'pg2'",
        )
        assert restart == "t"  # reserved WAL from the moment it was created
        slotless.start_node("pg2")
        await wait_until(
            lambda: walsender_slot(slotless) == "streaming|pg2", "pg2 streaming via its slot"
        )
        status = "\n".join(await console(runtime, VIEWER_ID, "/status"))
        assert re.search(r"^✅ pg2 replica · streaming · slot pg2$", status, re.M), status
    finally:
        await runtime.close()
