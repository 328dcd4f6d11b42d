"""/check end to end: the runbook's prerequisites read from real servers."""

from __future__ import annotations

import re

import pytest

from bot.models import Outcome
from bot.sandbox import LocalReplicationSet, PgBinaries
from tests.conftest import VIEWER_ID, TelegramHarness
from tests.integration._helpers import audit_rows, plain, reply_call, scratch_set, telegram_for

pytestmark = pytest.mark.integration

LEVEL_ICONS = ("✅", "⚠️", "❌")


def item_lines(text: str) -> list[str]:
    """The per-prerequisite lines (after the cluster header)."""
    return [line for line in text.splitlines()[1:] if line.strip()]


async def test_check_on_a_healthy_set_has_only_ok_and_warn_lines(
    telegram: TelegramHarness, pgset: LocalReplicationSet
) -> None:
    text = plain(await reply_call(telegram, VIEWER_ID, "/check"))
    header = re.match(r"^(✅|⚠️) main prerequisites: (\d+) ok, (\d+) warn, 0 fail$", text, re.M)
    assert header, text
    lines = item_lines(text)
    assert len(lines) == int(header.group(2)) + int(header.group(3))
    assert all(line.startswith(LEVEL_ICONS[:2]) for line in lines), text
    assert "❌" not in text
    assert "✅ pg1 · wal_level: wal_level = replica" in lines
    hba = [line for line in lines if "pg1 · pg_hba replication:" in line]
    assert len(hba) == 1 and hba[0].startswith("✅"), text
    assert re.search(r"host replication repluser 127\.0\.0\.1\S* scram-sha-256", hba[0]), hba
    assert any(line.startswith("✅ pg2 · max_worker_processes: ") for line in lines), text
    rewind = [line for line in lines if "pg2 · pg_rewind readiness:" in line]
    assert len(rewind) == 1, text
    checksums = pgset.psql("pg2", "SHOW data_checksums")
    hints = pgset.psql("pg2", "SHOW wal_log_hints")
    assert f"wal_log_hints = {hints}, data_checksums = {checksums}" in rewind[0], rewind
    ready = "on" in (hints, checksums)
    assert rewind[0].startswith("✅" if ready else "⚠️"), rewind
    rows = await audit_rows(telegram, 1)
    assert [(r.command, r.outcome) for r in rows] == [("check", Outcome.OK)]


async def test_check_fails_a_replica_whose_max_worker_processes_is_below_the_primarys(
    pg_binaries: PgBinaries,
) -> None:
    # A replica below its primary refuses to start, so raise the primary's value afterwards.
    rset: LocalReplicationSet
    with scratch_set(pg_binaries) as rset:
        rset.psql("pg1", "ALTER SYSTEM SET max_worker_processes = 12")
        rset.stop_node("pg1")
        rset.start_node("pg1")
        assert rset.psql("pg1", "SHOW max_worker_processes") == "12"
        assert rset.psql("pg2", "SHOW max_worker_processes") == "8"
        async with telegram_for(rset) as tg:
            text = plain(await reply_call(tg, VIEWER_ID, "/check"))

    assert re.match(r"^❌ main prerequisites: \d+ ok, \d+ warn, 1 fail$", text, re.M), text
    assert (
        "❌ pg2 · max_worker_processes: max_worker_processes = 8 is lower than on the primary, "
        "where it is 12 → set max_worker_processes = 12 (or more) on pg2; "
        "it will not start otherwise"
    ) in item_lines(text), text
