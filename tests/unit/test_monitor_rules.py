"""The pure alert rules: snapshots of one poll + thresholds -> conditions (and what is unknown)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import pytest

from bot.config import ClusterConfig, NodeConfig, Thresholds, parse_config
from bot.errors import ConfigError
from bot.models import (
    Alert,
    AlertNotice,
    AlertRule,
    AlertState,
    Condition,
    NodeFacts,
    NodeRole,
    NodeSnapshot,
    NoticeKind,
    ReceiverInfo,
    Severity,
    SlotInfo,
    WalSender,
)
from bot.services.monitor.rules import (
    CLUSTER_NODE,
    Evaluation,
    GrowthTracker,
    evaluate,
    time_lag_seconds,
)
from bot.units import parse_bytes, parse_duration
from handlers import render

MB, GB = 1024**2, 1024**3
NOW = 1_700_000_000.0

CLUSTER = ClusterConfig(
    name="main",
    nodes=(
        NodeConfig(name="pg1", role=NodeRole.PRIMARY, dsn="host=db1"),
        NodeConfig(name="pg2", role=NodeRole.REPLICA, dsn="host=db2", slot="pg2"),
        NodeConfig(name="pg3", role=NodeRole.REPLICA, dsn="host=db3"),  # no slot: app name
    ),
)


def sender(
    app: str,
    slot: str | None,
    state: str = "streaming",
    lag_bytes: int | None = 0,
    replay_lag_s: float | None = None,
    sent: str = "0/5000000",
    replay: str | None = "0/5000000",
    pid: int = 100,
) -> WalSender:
    return WalSender(
        pid=pid,
        application_name=app,
        client_addr="10.0.0.2",
        state=state,
        sent_lsn=sent,
        write_lsn=sent,
        flush_lsn=sent,
        replay_lsn=replay,
        write_lag_s=None,
        flush_lag_s=None,
        replay_lag_s=replay_lag_s,
        sync_state="async",
        slot_name=slot,
        replay_lag_bytes=lag_bytes,
    )


def slot(
    name: str,
    active: bool = True,
    retained: int | None = 16 * MB,
    wal_status: str | None = "reserved",
    safe_wal_size: int | None = None,
    inactive_since: datetime | None = None,
    invalidation_reason: str | None = None,
) -> SlotInfo:
    return SlotInfo(
        name=name,
        slot_type="physical",
        active=active,
        active_pid=200 if active else None,
        restart_lsn="0/4000000" if retained is not None else None,
        retained_bytes=retained,
        wal_status=wal_status,
        safe_wal_size=safe_wal_size,
        inactive_since=inactive_since,
        invalidation_reason=invalidation_reason,
    )


def primary(
    senders: tuple[WalSender, ...] | None = None,
    slots: tuple[SlotInfo, ...] | None = None,
    in_recovery: bool = False,
    timeline: int = 1,
) -> NodeSnapshot:
    if senders is None:
        senders = (sender("pg2", "pg2", pid=101), sender("pg3", None, pid=102))
    if slots is None:
        slots = (slot("pg2"),)
    return NodeSnapshot(
        "main",
        "pg1",
        NOW,
        in_recovery=in_recovery,
        server_version_num=150000,
        timeline=timeline,
        lsn="0/5000000",
        walsenders=senders,
        slots=slots,
    )


def replica(
    name: str, status: str | None = "streaming", in_recovery: bool = True, timeline: int = 1
) -> NodeSnapshot:
    receiver = ReceiverInfo(status, name, timeline, "0/5000000", "db1", 5432) if status else None
    return NodeSnapshot(
        "main",
        name,
        NOW,
        in_recovery=in_recovery,
        server_version_num=150000,
        timeline=timeline if status else None,
        lsn="0/5000000",
        receiver=receiver,
    )


def down(name: str, reason: str = "connection refused") -> NodeSnapshot:
    return NodeSnapshot("main", name, NOW, error=reason)


def healthy() -> dict[str, NodeSnapshot | None]:
    return {"pg1": primary(), "pg2": replica("pg2"), "pg3": replica("pg3")}


def run(
    snapshots: dict[str, NodeSnapshot | None],
    thresholds: Thresholds | None = None,
    previous: dict[str, NodeFacts] | None = None,
    rates: dict[str, float] | None = None,
) -> Evaluation:
    return evaluate(CLUSTER, snapshots, thresholds or Thresholds(), previous, rates)


def only(evaluation: Evaluation, rule: AlertRule) -> Condition:
    found = [c for c in evaluation.conditions if c.rule is rule]
    assert len(found) == 1, evaluation.conditions
    return found[0]


def rules(evaluation: Evaluation) -> set[tuple[str, AlertRule]]:
    return {(c.node, c.rule) for c in evaluation.conditions}


def rendered(condition: Condition) -> str:
    alert = Alert(
        7,
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
    return render.to_plain_text(render.alert_notice(AlertNotice(NoticeKind.FIRING, alert, NOW)))


# --- units -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50MB", 50 * MB),
        ("100 MB", 100 * MB),
        ("1GB", GB),
        ("1.5GB", int(1.5 * GB)),
        ("512kB", 512 * 1024),
        ("5GiB", 5 * GB),
        ("42", 42),
        (1234, 1234),
    ],
)
def test_sizes_accept_postgres_units(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30.0),
        ("10min", 600.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        ("1.5 h", 5400.0),
        (45, 45.0),
    ],
)
def test_durations_accept_units(text: str | int, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["fast", "10 parsecs", "-5s", "", "1e3s", "5 MB"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["big", "10 apples", "-1MB", "3 h"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


CONFIG = """
[telegram]
alert_chat_ids = [-100]
[audit]
path = "/tmp/x.sqlite3"
[monitor]
interval = "2s"
lag_bytes_warning = "10MB"
lag_bytes_critical = "20MB"
slot_inactive_after = "1h"
[[clusters]]
name = "main"
[clusters.monitor]
lag_bytes_warning = "1MB"
alert_chat_ids = [-200]
message_thread_id = 7
[[clusters.nodes]]
name = "pg1"
role = "primary"
dsn = "host=db1"
[[clusters]]
name = "other"
[[clusters.nodes]]
name = "o1"
role = "primary"
dsn = "host=o1"
"""


def test_thresholds_are_read_with_units_and_overridden_per_cluster() -> None:
    config = parse_config(tomllib.loads(CONFIG), {})
    assert config.monitor.interval_s == 2.0
    main, other = config.clusters
    assert main.monitor.thresholds.lag_bytes_warning == 1 * MB
    assert main.monitor.thresholds.lag_bytes_critical == 20 * MB  # inherited from [monitor]
    assert main.monitor.thresholds.slot_inactive_after_s == 3600.0
    assert other.monitor.thresholds.lag_bytes_warning == 10 * MB
    assert other.monitor.thresholds.lag_time_warning_s == 30.0  # the built-in default
    assert config.alert_route("main") == ((-200,), 7)
    assert config.alert_route("other") == ((-100,), None)


@pytest.mark.parametrize(
    ("replace", "key"),
    [
        ('lag_bytes_critical = "20MB"', "monitor.lag_bytes_critical"),
        ('interval = "2s"', "monitor.interval"),
    ],
)
def test_bad_monitor_settings_name_the_key(replace: str, key: str) -> None:
    broken = CONFIG.replace(replace, replace.split("=")[0] + '= "5 parsecs"')
    if key == "monitor.lag_bytes_critical":
        broken = CONFIG.replace(replace, 'lag_bytes_critical = "5MB"')  # below the warning
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(broken), {})
    assert caught.value.key == key


# --- replicas ----------------------------------------------------------------------------------


def test_a_healthy_cluster_has_no_conditions_and_nothing_unknown() -> None:
    result = run(healthy())
    assert result.conditions == ()
    assert result.unknown == frozenset()
    assert result.facts["pg1"] == NodeFacts(False, 1)


def test_replica_absent_from_pg_stat_replication_is_not_streaming_at_once() -> None:
    snapshots = healthy()
    snapshots["pg1"] = primary(senders=(sender("pg3", None, pid=102),))
    condition = only(run(snapshots), AlertRule.NOT_STREAMING)
    assert condition.node == "pg2"
    assert condition.severity is Severity.CRITICAL
    assert condition.polls == 1 and condition.hold_s == 0
    assert "absent from pg_stat_replication" in str(condition.figures["reason"])


def test_replica_without_slot_is_matched_by_application_name() -> None:
    snapshots = healthy()
    snapshots["pg1"] = primary(senders=(sender("pg2", "pg2", pid=101),))  # pg3 missing
    assert only(run(snapshots), AlertRule.NOT_STREAMING).node == "pg3"


def test_catchup_state_and_a_waiting_receiver_are_not_streaming() -> None:
    snapshots = healthy()
    snapshots["pg1"] = primary(
        senders=(sender("pg2", "pg2", state="catchup", pid=101), sender("pg3", None, pid=102))
    )
    snapshots["pg3"] = replica("pg3", status="waiting")
    result = run(snapshots)
    assert rules(result) == {("pg2", AlertRule.NOT_STREAMING), ("pg3", AlertRule.NOT_STREAMING)}
    pg3 = next(c for c in result.conditions if c.node == "pg3")
    assert pg3.figures["receiver"] == "waiting"


def test_basebackup_walsenders_never_count_as_lagging_replicas() -> None:
    backup = sender("pg_basebackup", None, state="backup", lag_bytes=900 * MB, pid=300)
    wal_stream = sender(
        "pg_basebackup", None, lag_bytes=900 * MB, replay=None, replay_lag_s=9999, pid=301
    )
    snapshots = healthy()
    snapshots["pg1"] = primary(
        senders=(sender("pg2", "pg2", pid=101), sender("pg3", None, pid=102), backup, wal_stream)
    )
    assert run(snapshots).conditions == ()


def test_a_basebackup_holding_the_replicas_slot_makes_not_streaming_a_warning() -> None:
    # pg_basebackup -R --slot=pg2 run as application_name pg2: the file sender and its WAL
    # stream (which holds the slot and never reports a replay position)
    files = sender("pg2", None, state="backup", lag_bytes=None, replay=None, pid=300)
    rebuild_stream = sender("pg2", "pg2", lag_bytes=500 * MB, replay=None, pid=301)
    snapshots = healthy()
    snapshots["pg1"] = primary(senders=(sender("pg3", None, pid=102), files, rebuild_stream))
    snapshots["pg2"] = down("pg2")
    condition = only(run(snapshots), AlertRule.NOT_STREAMING)
    assert condition.severity is Severity.WARNING
    assert condition.figures["basebackup"] is True
    assert not any(c.rule is AlertRule.BYTE_LAG for c in run(snapshots).conditions)
    assert "rebuild is probably running" in rendered(condition)


def test_a_replica_streaming_as_pg_basebackup_is_a_replica() -> None:
    """The name an old rebuild left behind is not a backup: state and pairing decide."""
    left_behind = sender("pg_basebackup", "pg2", pid=101)
    snapshots = healthy()
    snapshots["pg1"] = primary(senders=(left_behind, sender("pg3", None, pid=102)))
    assert run(snapshots).conditions == ()


def test_idle_primary_is_never_a_time_lag() -> None:
    """replay_lag keeps an old value (or turns NULL) when nothing is written: not lag."""
    idle = sender("pg2", "pg2", replay_lag_s=3600.0, sent="0/5000000", replay="0/5000000")
    assert time_lag_seconds(idle) == 0.0
    snapshots = healthy()
    snapshots["pg1"] = primary(senders=(idle, sender("pg3", None, replay_lag_s=None, pid=102)))
    result = run(snapshots, Thresholds(lag_time_warning_s=1.0, lag_time_critical_s=2.0))
    assert result.conditions == ()


def test_time_lag_warns_and_turns_critical() -> None:
    behind = sender("pg2", "pg2", replay_lag_s=40.0, sent="0/6000000", replay="0/5000000")
    snapshots = healthy()
    snapshots["pg1"] = primary(senders=(behind, sender("pg3", None, pid=102)))
    assert only(run(snapshots), AlertRule.TIME_LAG).severity is Severity.WARNING
    far = sender("pg2", "pg2", replay_lag_s=400.0, sent="0/6000000", replay="0/5000000")
    snapshots["pg1"] = primary(senders=(far, sender("pg3", None, pid=102)))
    assert only(run(snapshots), AlertRule.TIME_LAG).severity is Severity.CRITICAL


def test_byte_lag_has_two_levels_and_must_last_60_seconds() -> None:
    snapshots = healthy()
    snapshots["pg1"] = primary(
        senders=(sender("pg2", "pg2", lag_bytes=60 * MB), sender("pg3", None, pid=102))
    )
    warning = only(run(snapshots), AlertRule.BYTE_LAG)
    assert (warning.severity, warning.hold_s) == (Severity.WARNING, 60.0)
    snapshots["pg1"] = primary(
        senders=(sender("pg2", "pg2", lag_bytes=120 * MB), sender("pg3", None, pid=102))
    )
    assert only(run(snapshots), AlertRule.BYTE_LAG).severity is Severity.CRITICAL
    assert "120.0 MB behind the primary" in rendered(only(run(snapshots), AlertRule.BYTE_LAG))


def test_a_replica_just_connected_without_replay_lsn_is_unknown_not_lagging() -> None:
    fresh = sender("pg2", "pg2", lag_bytes=None, replay=None)
    snapshots = healthy()
    snapshots["pg1"] = primary(senders=(fresh, sender("pg3", None, pid=102)))
    result = run(snapshots)
    assert result.conditions == ()
    assert result.is_unknown("pg2", AlertRule.BYTE_LAG)
    assert result.is_unknown("pg2", AlertRule.TIME_LAG)


# --- nodes -------------------------------------------------------------------------------------


def test_a_failed_poll_is_node_down_after_two_polls() -> None:
    snapshots = healthy()
    snapshots["pg3"] = down("pg3", "timeout expired")
    condition = only(run(snapshots), AlertRule.NODE_DOWN)
    assert (condition.node, condition.polls) == ("pg3", 2)
    assert condition.figures["reason"] == "timeout expired"


def test_a_down_primary_leaves_lag_and_slots_unknown() -> None:
    snapshots = healthy()
    snapshots["pg1"] = down("pg1")
    result = run(snapshots)
    assert rules(result) == {("pg1", AlertRule.NODE_DOWN)}
    for rule in (AlertRule.BYTE_LAG, AlertRule.TIME_LAG):
        assert result.is_unknown("pg2", rule)
    assert result.is_unknown("pg1", AlertRule.SLOT_INACTIVE)
    # Its receiver still says streaming, but the primary cannot confirm it: neither way.
    assert result.is_unknown("pg2", AlertRule.NOT_STREAMING)


def test_every_node_down_is_one_cluster_condition_said_once() -> None:
    result = run({name: down(name) for name in ("pg1", "pg2", "pg3")})
    condition = only(result, AlertRule.CLUSTER_UNREACHABLE)
    assert condition.node == CLUSTER_NODE
    assert condition.repeat is False
    assert len(result.conditions) == 1
    assert result.is_unknown("pg2", AlertRule.NODE_DOWN)


def test_a_node_without_fresh_data_is_unknown() -> None:
    snapshots = healthy()
    snapshots["pg2"] = None
    result = run(snapshots)
    assert result.conditions == ()
    assert result.is_unknown("pg2", AlertRule.NODE_DOWN)
    assert result.is_unknown(CLUSTER_NODE, AlertRule.CLUSTER_UNREACHABLE)


def test_a_primary_in_recovery_is_a_role_mismatch() -> None:
    snapshots = healthy()
    snapshots["pg1"] = primary(in_recovery=True)
    snapshots["pg2"] = replica("pg2", in_recovery=False)
    result = run(snapshots)
    assert {("pg1", AlertRule.ROLE_MISMATCH), ("pg2", AlertRule.ROLE_MISMATCH)} <= rules(result)


def test_role_and_timeline_changes_are_events() -> None:
    snapshots = healthy()
    snapshots["pg2"] = replica("pg2", in_recovery=False, status=None)
    snapshots["pg1"] = primary(timeline=2)
    previous = {"pg1": NodeFacts(False, 1), "pg2": NodeFacts(True, 1)}
    result = run(snapshots, previous=previous)
    role = only(result, AlertRule.ROLE_CHANGE)
    timeline = only(result, AlertRule.TIMELINE_CHANGE)
    assert role.event and timeline.event
    assert (role.node, role.figures["was"], role.figures["now"]) == ("pg2", "replica", "primary")
    assert (timeline.figures["was"], timeline.figures["now"]) == (1, 2)
    assert result.facts["pg2"] == NodeFacts(False, 1)  # timeline unknown: the last one is kept


def test_a_replica_whose_receiver_stops_keeps_its_last_timeline() -> None:
    snapshots = healthy()
    snapshots["pg2"] = replica("pg2", status=None)
    result = run(snapshots, previous={"pg2": NodeFacts(True, 3)})
    assert result.facts["pg2"] == NodeFacts(True, 3)
    assert not any(c.rule is AlertRule.TIMELINE_CHANGE for c in result.conditions)


# --- slots -------------------------------------------------------------------------------------


def test_inactive_slot_warns_after_ten_minutes_counted_from_inactive_since() -> None:
    since = datetime.fromtimestamp(NOW - 30, UTC)
    snapshots = healthy()
    snapshots["pg1"] = primary(slots=(slot("pg2"), slot("old", active=False, inactive_since=since)))
    condition = only(run(snapshots), AlertRule.SLOT_INACTIVE)
    assert (condition.node, condition.subject) == ("pg1", "old")
    assert condition.hold_s == 600.0
    assert condition.since == NOW - 30
    assert "/dropslot old" in rendered(condition)


def test_slot_retained_wal_levels_with_an_eta_to_lost() -> None:
    snapshots = healthy()
    snapshots["pg1"] = primary(slots=(slot("pg2", retained=2 * GB, safe_wal_size=1 * GB),))
    condition = only(run(snapshots, rates={"pg2": 1 * MB}), AlertRule.SLOT_RETAINED)
    assert condition.severity is Severity.WARNING
    assert condition.figures["eta_lost_s"] == pytest.approx(1024.0)
    assert condition.figures["used_by"] == "pg2"
    text = rendered(condition)
    assert "keeps 2.0 GB of WAL" in text and "in about 17 min 4 s" in text
    snapshots["pg1"] = primary(slots=(slot("pg2", retained=6 * GB),))
    assert only(run(snapshots), AlertRule.SLOT_RETAINED).severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("wal_status", "reason", "severity", "lost"),
    [
        ("extended", None, Severity.WARNING, False),
        ("unreserved", None, Severity.CRITICAL, False),
        ("lost", None, Severity.CRITICAL, True),
        (None, "wal_removed", Severity.CRITICAL, True),
    ],
)
def test_slot_at_risk_by_wal_status(
    wal_status: str | None, reason: str | None, severity: Severity, lost: bool
) -> None:
    snapshots = healthy()
    snapshots["pg1"] = primary(
        slots=(slot("pg2", wal_status=wal_status, invalidation_reason=reason),)
    )
    condition = only(run(snapshots), AlertRule.SLOT_AT_RISK)
    assert condition.severity is severity
    assert condition.figures["lost"] is lost
    if lost:
        assert "replica pg2 must be rebuilt: /rebuild pg2" in rendered(condition)


def test_growth_rate_needs_history_and_restarts_when_the_slot_shrinks() -> None:
    tracker = GrowthTracker(min_span_s=10)
    tracker.add("main/s", 0.0, 100)
    tracker.add("main/s", 5.0, 600)
    assert tracker.rate("main/s") is None  # 5 s of history is too little
    tracker.add("main/s", 20.0, 2100)
    assert tracker.rate("main/s") == pytest.approx(100.0)
    tracker.add("main/s", 25.0, 50)  # consumer caught up
    assert tracker.rate("main/s") is None
    tracker.forget_except(set(), "main/")
    assert tracker.rate("main/s") is None


def test_a_replica_the_bot_is_rebuilding_is_down_as_a_warning_naming_the_job() -> None:
    snapshots = healthy()
    snapshots["pg2"] = down("pg2")
    snapshots["pg1"] = primary(senders=(sender("pg3", None, pid=102),))
    result = evaluate(CLUSTER, snapshots, Thresholds(), rebuilding={"pg2": 7})
    down_alert = only(result, AlertRule.NODE_DOWN)
    not_streaming = only(result, AlertRule.NOT_STREAMING)
    assert (down_alert.severity, not_streaming.severity) == (Severity.WARNING, Severity.WARNING)
    assert down_alert.figures["rebuild_job"] == not_streaming.figures["rebuild_job"] == 7
    assert "replbot is rebuilding or repairing pg2 (job 7)" in rendered(down_alert)
    # Once the job has ended, the same state is critical again.
    after = run(snapshots)
    assert only(after, AlertRule.NODE_DOWN).severity is Severity.CRITICAL
    assert only(after, AlertRule.NOT_STREAMING).severity is Severity.CRITICAL
