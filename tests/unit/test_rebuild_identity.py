"""Identity of a rebuilt replica, decided without servers: which walsenders are a base backup,
whether a rebuilt replica streams as planned (both sides), what the layout probe found, and
which application_name the plan gives the new copy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.config import ClusterConfig, NodeConfig, ReplicationSource
from bot.models import (
    NodeRole,
    NodeSnapshot,
    ReceiverInfo,
    SlotInfo,
    WalSender,
    basebackup_pids,
)
from bot.phrases import Phrase
from bot.services.plans.model import describe
from bot.services.rebuild.plan import build_plan
from bot.services.rebuild.preflight import DataDirLayout, parse_layout
from bot.services.rebuild.verify import judge_streaming
from handlers.i18n import language
from handlers.render.check import item_detail
from handlers.render.phrases import say
from handlers.render.plans import said
from tests.unit.fakes import slot, walsender


def receiver(status: str | None = "streaming", in_recovery: bool = True) -> NodeSnapshot:
    return NodeSnapshot(
        cluster="main",
        node="pg2",
        at=0.0,
        in_recovery=in_recovery,
        server_version="15.10",
        server_version_num=150010,
        lsn="0/3000148",
        receiver=ReceiverInfo(
            status=status,
            slot_name="pg2",
            received_tli=1,
            flushed_lsn="0/3000148",
            sender_host="10.0.0.1",
            sender_port=5432,
            written_lsn="0/3000148",
        ),
        replay_delay_s=0.0,
    )


def sync(sender: WalSender, state: str) -> WalSender:
    return dataclasses.replace(sender, sync_state=state)


def no_replay(sender: WalSender) -> WalSender:
    return dataclasses.replace(sender, replay_lsn=None)


# --- which walsenders are a base backup -----------------------------------------------------


def test_a_walsender_named_pg_basebackup_that_streams_is_a_replica_not_a_backup() -> None:
    assert not walsender(201, "pg_basebackup", "pg2", state="streaming").is_basebackup
    assert walsender(202, "pg2", None, state="backup").is_basebackup
    assert basebackup_pids([walsender(201, "pg_basebackup", "pg2")]) == frozenset()


def test_the_wal_stream_of_a_base_backup_is_paired_with_it() -> None:
    files = walsender(300, "pg2", None, state="backup")
    stream = no_replay(walsender(301, "pg2", "pg2"))
    elsewhere = no_replay(walsender(302, "pg2", None, client_addr="10.0.0.9"))
    standby = walsender(303, "pg2", "other")  # same name and host, but it replays: a standby
    assert basebackup_pids([files, stream, elsewhere, standby]) == {300, 301}


# --- verify: both sides ---------------------------------------------------------------------

SLOT = slot("pg2", True, 201)


def english(seen: tuple[Phrase, ...]) -> str:
    """What a verdict saw, as an English chat shows it."""
    with language("en"):
        return said(seen)


def test_verify_passes_when_both_sides_agree_on_the_name() -> None:
    verdict = judge_streaming(receiver(), SLOT, [walsender(201, "pg2", "pg2")], "pg2")
    assert verdict.ok
    assert english(verdict.seen) == (
        "receiver streaming; slot pg2 active (PID 201); walsender streaming as pg2, "
        "sync_state async"
    )


@pytest.mark.parametrize(
    ("replica", "slot_info", "senders", "expected_sync", "seen"),
    [
        pytest.param(
            receiver(),
            SLOT,
            [walsender(201, "pg_basebackup", "pg2")],
            "",
            "walsender streaming as pg_basebackup",
            id="streams-under-another-name",
        ),
        pytest.param(
            receiver(),
            SLOT,
            [walsender(201, "pg2", "pg2", state="catchup")],
            "",
            "walsender catchup as pg2",
            id="walsender-catching-up",
        ),
        pytest.param(
            receiver("waiting"),
            SLOT,
            [walsender(201, "pg2", "pg2")],
            "",
            "receiver waiting",
            id="receiver-waiting",
        ),
        pytest.param(
            receiver(in_recovery=False),
            SLOT,
            [walsender(201, "pg2", "pg2")],
            "",
            "NOT in recovery",
            id="promoted",
        ),
        pytest.param(
            None,
            SLOT,
            [walsender(201, "pg2", "pg2")],
            "",
            "replica does not answer",
            id="replica-down",
        ),
        pytest.param(
            receiver(),
            slot("pg2", False),
            [walsender(201, "pg2", "pg2")],
            "",
            "slot pg2 inactive",
            id="slot-inactive",
        ),
        pytest.param(
            receiver(),
            SLOT,
            [],
            "",
            "its walsender not in pg_stat_replication",
            id="walsender-gone",
        ),
        pytest.param(
            receiver(),
            SLOT,
            [walsender(201, "pg2", "pg2")],
            "sync",
            "sync_state async",
            id="was-sync-now-async",
        ),
        pytest.param(
            receiver(),
            SLOT,
            [sync(walsender(201, "pg2", "pg2"), "potential")],
            "quorum",
            "sync_state potential",
            id="was-quorum-now-potential",
        ),
    ],
)
def test_verify_fails_unless_the_primary_sees_the_planned_replica(
    replica: NodeSnapshot | None,
    slot_info: SlotInfo | None,
    senders: list[WalSender],
    expected_sync: str,
    seen: str,
) -> None:
    verdict = judge_streaming(replica, slot_info, senders, "pg2", expected_sync)
    assert not verdict.ok
    assert seen in english(verdict.seen)


def test_verify_requires_the_old_sync_state_only_of_a_synchronous_standby() -> None:
    sender = sync(walsender(201, "pg2", "pg2"), "sync")
    assert judge_streaming(receiver(), SLOT, [sender], "pg2", "sync").ok
    assert judge_streaming(receiver(), SLOT, [sender], "pg2", "async").ok
    assert judge_streaming(receiver(), SLOT, [walsender(201, "pg2", "pg2")], "pg2", "async").ok


# --- the layout probe -----------------------------------------------------------------------


def test_parse_layout_reads_every_probe() -> None:
    text = (
        "symlink=/srv/pg2\nwal_symlink=/wal/pg2\nmount=yes\ntablespaces=2\n"
        "system_identifier=7312345678901234567\n"
    )
    assert parse_layout(text) == DataDirLayout(
        symlink_to="/srv/pg2",
        wal_symlink_to="/wal/pg2",
        mount_point=True,
        tablespaces=2,
        system_identifier="7312345678901234567",
    )


def test_parse_layout_of_a_plain_directory_without_pg_control() -> None:
    text = "symlink=\nwal_symlink=\nmount=\ntablespaces=0\nsystem_identifier=\n"
    assert parse_layout(text) == DataDirLayout()
    assert parse_layout("system_identifier=pg_controldata: could not open") == DataDirLayout()


# --- which name the plan gives the new copy --------------------------------------------------


def replica_config(application_name: str | None = None) -> tuple[ClusterConfig, NodeConfig]:
    primary = NodeConfig("pg1", NodeRole.PRIMARY, "host=db1 user=bot")
    node = NodeConfig(
        "pg2",
        NodeRole.REPLICA,
        "host=db2 user=bot",
        slot="pg2",
        data_dir=Path("/var/lib/postgresql/16/main"),
        pg_bin_dir=Path("/usr/lib/postgresql/16/bin"),
        start_command="pg_ctlcluster 16 main start",
        stop_command="pg_ctlcluster 16 main stop -m fast",
        replication=ReplicationSource("10.0.0.1", 5432, "repluser"),
        shell="local",
        application_name=application_name,
    )
    return ClusterConfig("main", (primary, node)), node


@pytest.mark.parametrize(
    ("configured", "seen", "planned"),
    [
        (None, "walreceiver", "walreceiver"),
        (None, "", "pg2"),
        ("custom_name", "pg2", "custom_name"),
    ],
)
def test_the_plan_names_the_new_copy_and_verify_expects_that_name(
    configured: str | None, seen: str, planned: str
) -> None:
    cluster, node = replica_config(configured)
    plan = build_plan(
        cluster, node, "20261201T000000", False, seen_application_name=seen, sync_state="sync"
    )
    assert plan.application_name == planned
    assert plan.sync_state == "sync"
    steps = {s.key: describe(s.action) for s in plan.steps}
    assert f"application_name={planned}" in steps["basebackup"]
    assert "pg_basebackup" not in steps["basebackup"].split("--dbname=")[1]
    assert steps["verify"].endswith(
        f"its walsender streaming as application_name {planned}, sync_state sync"
    )


# --- the slot check (review findings) -------------------------------------------------------


def _slot_check(walsenders: list[WalSender], slots: list[SlotInfo]) -> tuple[bool, str, str]:
    from bot.config import ClusterConfig, NodeConfig
    from bot.services.rebuild.preflight import _slot_item

    pg1 = NodeConfig(name="pg1", role=NodeRole.PRIMARY, dsn="host=db1", cluster="main")
    pg2 = NodeConfig(name="pg2", role=NodeRole.REPLICA, dsn="host=db2", slot="pg2", cluster="main")
    primary = NodeSnapshot(
        cluster="main",
        node="pg1",
        at=0.0,
        in_recovery=False,
        walsenders=tuple(walsenders),
        slots=tuple(slots),
    )
    missing, item = _slot_item(ClusterConfig("main", (pg1, pg2)), pg2, primary, None)
    fix = say(item.fix) if item.fix is not None else ""
    return missing, item.level.value, item_detail(item) + " " + fix


def test_a_leftover_rollback_copy_of_the_slot_is_refused() -> None:
    _, level, text = _slot_check([], [slot("pg2", False), slot("pg2_rb", False)])
    assert level == "fail"
    assert "pg2_rb already exists" in text and "/dropslot pg2_rb" in text


def test_a_slot_held_by_a_running_base_backup_under_the_replicas_name_is_refused() -> None:
    files = walsender(555, "pg2", None, state="backup", replay_lag_bytes=None)
    stream = dataclasses.replace(
        walsender(556, "pg2", "pg2", replay_lag_bytes=None), replay_lsn=None
    )
    _, level, text = _slot_check([files, stream], [slot("pg2", True, 556)])
    assert level == "fail"
    assert "held by a running pg_basebackup (PID 556)" in text


def test_a_slot_held_by_the_replica_itself_is_fine() -> None:
    _, level, text = _slot_check([walsender(201, "pg2", "pg2")], [slot("pg2", True, 201)])
    assert level == "ok", text
