"""The slotless_wal rule: a replica without a slot, measured in bytes of WAL the primary keeps."""

from __future__ import annotations

import dataclasses

from bot.config import ClusterConfig, NodeConfig, Thresholds
from bot.models import (
    Alert,
    AlertRule,
    AlertState,
    Condition,
    NodeRole,
    NodeSnapshot,
    ReceiverInfo,
    Severity,
    SlotInfo,
    WalKeep,
    WalSender,
)
from bot.services.monitor.rules import Evaluation, evaluate
from bot.services.slotview import SlotOverrides
from handlers import render

MB = 1024**2
NOW = 1_700_000_000.0
# oldest segment 0x10 of 16 MB starts at 0/10000000 (256 MB); the primary is at 512 MB:
# it keeps 256 MB, and 25 % of that (64 MB) is the warning margin.
OLDEST = "000000010000000000000010"
CURRENT = "0/20000000"

CLUSTER = ClusterConfig(
    name="main",
    nodes=(
        NodeConfig(name="pg1", role=NodeRole.PRIMARY, dsn="host=db1"),
        NodeConfig(name="pg2", role=NodeRole.REPLICA, dsn="host=db2"),  # no slot configured
    ),
)


def sender(flush: str, slot: str | None = None, state: str = "streaming") -> WalSender:
    return WalSender(
        pid=101,
        application_name="pg2",
        client_addr="10.0.0.2",
        state=state,
        sent_lsn=flush,
        write_lsn=flush,
        flush_lsn=flush,
        replay_lsn=flush,
        write_lag_s=None,
        flush_lag_s=None,
        replay_lag_s=None,
        sync_state="async",
        slot_name=slot,
        replay_lag_bytes=0,
    )


def primary(
    senders: tuple[WalSender, ...] = (),
    current: str = CURRENT,
    oldest: str | None = OLDEST,
    slots: tuple[SlotInfo, ...] = (),
) -> NodeSnapshot:
    return NodeSnapshot(
        "main",
        "pg1",
        NOW,
        in_recovery=False,
        server_version_num=150000,
        timeline=1,
        lsn=current,
        walsenders=senders,
        slots=slots,
        wal_keep=WalKeep(
            wal_keep_size=64 * MB,
            segment_size=16 * MB,
            archive_mode="off",
            waldir_readable=oldest is not None,
            oldest_segment=oldest,
        ),
    )


def replica(lsn: str | None = None) -> NodeSnapshot:
    if lsn is None:
        return NodeSnapshot("main", "pg2", NOW, error="connection refused")
    return NodeSnapshot(
        "main",
        "pg2",
        NOW,
        in_recovery=True,
        server_version_num=150000,
        timeline=1,
        lsn=lsn,
        receiver=ReceiverInfo("streaming", None, 1, lsn, "db1", 5432),
    )


def run(
    p: NodeSnapshot,
    r: NodeSnapshot,
    positions: dict[str, str] | None = None,
    cluster: ClusterConfig = CLUSTER,
    thresholds: Thresholds | None = None,
) -> Evaluation:
    return evaluate(cluster, {"pg1": p, "pg2": r}, thresholds or Thresholds(), positions=positions)


def slotless(evaluation: Evaluation) -> list[Severity]:
    return [c.severity for c in evaluation.conditions if c.rule is AlertRule.SLOTLESS_WAL]


def test_a_caught_up_replica_without_a_slot_does_not_fire() -> None:
    result = run(primary((sender(CURRENT),)), replica(CURRENT))
    assert slotless(result) == []
    assert not result.is_unknown("pg2", AlertRule.SLOTLESS_WAL)


def test_an_idle_primary_never_makes_it_fire_however_long_it_stays_idle() -> None:
    # Nothing is written: the current LSN stays in the oldest kept segment, the replica has
    # all of it. Kept WAL can be a few bytes; the margin equals it, so the share is 100 %.
    for current in ("0/10000000", "0/10000028", "0/100000D8", "0/10FFFFF0"):
        p = primary((sender(current),), current=current)
        for _ in range(50):
            assert slotless(run(p, replica(current))) == []


def test_fires_a_warning_when_closer_than_the_margin_to_the_oldest_wal_kept() -> None:
    result = run(primary((sender("0/13000000"),)), replica("0/13000000"))
    (condition,) = [c for c in result.conditions if c.rule is AlertRule.SLOTLESS_WAL]
    assert condition.severity is Severity.WARNING
    assert condition.polls == 2  # a burst of writes must last two polls
    assert condition.figures["margin"] == 48 * MB
    assert condition.figures["kept"] == 256 * MB
    text = render.to_plain_text(render.slotless_alert_hint(_alert(condition)))
    assert "/attachslot pg2" in text


def test_a_wider_margin_setting_fires_earlier() -> None:
    ok = run(primary((sender("0/1C000000"),)), replica("0/1C000000"))
    assert slotless(ok) == []
    wide = run(
        primary((sender("0/1C000000"),)),
        replica("0/1C000000"),
        thresholds=Thresholds(slotless_margin_pct=80),
    )
    assert slotless(wide) == [Severity.WARNING]


def test_critical_when_the_wal_it_needs_is_gone_even_while_it_is_stopped() -> None:
    # Stopped: no walsender, the replica does not answer; its last known position counts.
    result = run(primary(), replica(None), positions={"pg2": "0/0F000000"})
    (condition,) = [c for c in result.conditions if c.rule is AlertRule.SLOTLESS_WAL]
    assert condition.severity is Severity.CRITICAL
    assert condition.figures["connected"] is False
    headline = render.to_plain_text(render.slotless_alert_headline(_alert(condition)))
    assert "already removed" in headline
    assert "/rebuild pg2" in render.to_plain_text(render.slotless_alert_hint(_alert(condition)))


def test_stopped_without_any_known_position_is_unknown_not_healthy() -> None:
    result = run(primary(), replica(None))
    assert slotless(result) == []
    assert result.is_unknown("pg2", AlertRule.SLOTLESS_WAL)


def test_unknown_while_the_oldest_wal_cannot_be_read() -> None:
    result = run(primary((sender("0/13000000"),), oldest=None), replica("0/13000000"))
    assert slotless(result) == []
    assert result.is_unknown("pg2", AlertRule.SLOTLESS_WAL)


def test_resolved_when_the_replica_catches_up() -> None:
    behind = run(primary((sender("0/13000000"),)), replica("0/13000000"))
    assert slotless(behind) == [Severity.WARNING]
    caught_up = run(primary((sender(CURRENT),)), replica(CURRENT))
    assert slotless(caught_up) == []
    assert not caught_up.is_unknown("pg2", AlertRule.SLOTLESS_WAL)  # so the alert resolves


def test_resolved_when_it_gets_a_slot_its_walsender_holds() -> None:
    slot = SlotInfo("pg2", "physical", True, 101, "0/13000000", 0, "reserved", None)
    result = run(primary((sender("0/13000000", slot="pg2"),), slots=(slot,)), replica("0/13000000"))
    assert slotless(result) == []
    assert not result.is_unknown("pg2", AlertRule.SLOTLESS_WAL)


def test_a_stopped_replica_whose_slot_exists_is_protected() -> None:
    slot = SlotInfo("pg2", "physical", False, None, "0/0F000000", 0, "reserved", None)
    cluster = SlotOverrides()
    cluster.set("main", "pg2", "pg2")  # attached from the chat, not in the config yet
    result = run(
        primary(slots=(slot,)),
        replica(None),
        positions={"pg2": "0/0F000000"},
        cluster=cluster.apply(CLUSTER),
    )
    assert slotless(result) == []


def test_a_configured_slot_the_replica_does_not_use_does_not_protect_it() -> None:
    with_slot = dataclasses.replace(
        CLUSTER,
        nodes=(CLUSTER.nodes[0], dataclasses.replace(CLUSTER.nodes[1], slot="pg2")),
    )
    # the walsender is matched by application_name and holds no slot
    result = run(primary((sender("0/13000000"),)), replica("0/13000000"), cluster=with_slot)
    assert slotless(result) == [Severity.WARNING]


def _alert(condition: Condition) -> Alert:
    return Alert(
        1,
        condition.cluster,
        condition.node,
        condition.rule,
        condition.subject,
        condition.severity,
        condition.figures,
        AlertState.FIRING,
        NOW,
        NOW,
    )
