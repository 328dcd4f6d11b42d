"""The rewind path on fakes: reading the target's probe, the preconditions, the plan."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import ClusterConfig, NodeConfig, NodeRole, ReplicationSource
from bot.errors import ReplbotError
from bot.models import CommandResult
from bot.services.plans.model import (
    FileEdit,
    Plan,
    Probe,
    RemoteCommand,
    SlotChange,
    SlotOp,
    Sql,
    SqlTarget,
    Wait,
    describe,
    plan_digest,
)
from bot.services.plans.runner import OutputSink, PlanRunner
from bot.services.repair.rewind import (
    RewindCommands,
    RewindFacts,
    TargetState,
    build_rewind_plan,
    grant_statements,
    missing_segments,
    parse_rewind_estimate,
    parse_target_probe,
    rewind_possible,
    rewind_preconditions,
)
from bot.services.repair.timeline import classify_divergence
from tests.unit.fakes import FakeClock

TAG = "20261202T010000_0badcafe"
DATA = "/var/lib/postgresql/16/my main"
HISTORY = "1\t0/302E7A0\tno recovery target specified\n"

CONTROLDATA = """\
pg_control version number:            1300
Database system identifier:           7443211111111111111
Database cluster state:               shut down
Latest checkpoint location:           0/3045F10
Latest checkpoint's REDO location:    0/3045F10
Latest checkpoint's TimeLineID:       2
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
wal_log_hints setting:                on
Bytes per WAL segment:                16777216
Data page checksum version:           0
"""


def probe_output(
    controldata: str = CONTROLDATA,
    segments: tuple[str, ...] = ("000000010000000000000002", "000000020000000000000003"),
    status: int = 3,
    rewind: bool = True,
) -> str:
    lines = [f"status {status}"]
    lines += [f"cd {line}" for line in controldata.splitlines()]
    lines += [f"wal {name}" for name in (*segments, "00000002.history", "archive_status")]
    lines.append(f"history 00000002.history {base64.b64encode(HISTORY.encode()).decode()}")
    if rewind:
        lines.append("pg_rewind yes")
    return "\n".join(lines) + "\n"


def replica(stop_command: str | None = "pg_ctlcluster 16 main stop -m fast") -> NodeConfig:
    return NodeConfig(
        "pg2",
        NodeRole.REPLICA,
        "host=db2 user=bot",
        slot="pg2",
        data_dir=Path(DATA),
        pg_bin_dir=Path("/usr/lib/postgresql/16/bin"),
        start_command="pg_ctlcluster 16 main start",
        stop_command=stop_command,
        replication=ReplicationSource("10.0.0.1", 5432, "repluser", Path("/etc/replbot/pass")),
        shell="local",
        keep_files=("postgresql.conf",),
    )


def cluster_of(node: NodeConfig) -> ClusterConfig:
    return ClusterConfig("main", (NodeConfig("pg1", NodeRole.PRIMARY, "host=db1"), node))


def facts_of(target: TargetState, **changes: object) -> RewindFacts:
    div = classify_divergence(
        target.end_timeline, target.end_lsn, target.history(2), 1, "", "0/3100000"
    )
    base = RewindFacts(
        target=target,
        primary_timeline=1,
        primary_lsn="0/3100000",
        primary_history="",
        slot_exists=True,
        divergence=div,
        target_lsn=target.end_lsn,
        target_timeline=target.end_timeline,
        primary_oldest_segment="000000010000000000000002",
        primary_system_identifier="7443211111111111111",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_probe_output_is_read_into_the_target_state() -> None:
    state = parse_target_probe(probe_output())
    assert not state.running and state.state == "shut down"
    assert (state.timeline, state.end_timeline, state.end_lsn) == (2, 2, "0/3045F10")
    assert state.wal_log_hints and not state.data_checksums and state.pg_rewind_present
    assert state.history(2) == HISTORY and state.history(1) == ""
    assert state.wal_segments == ("000000010000000000000002", "000000020000000000000003")
    assert state.system_identifier == "7443211111111111111"


def test_a_standby_stopped_in_recovery_ends_at_its_minimum_recovery_point() -> None:
    text = (
        CONTROLDATA.replace("shut down", "shut down in recovery")
        .replace(
            "Minimum recovery ending location:     0/0",
            "Minimum recovery ending location:     0/3050000",
        )
        .replace(
            "Min recovery ending loc's timeline:   0", "Min recovery ending loc's timeline:   3"
        )
    )
    state = parse_target_probe(probe_output(text))
    assert (state.end_lsn, state.end_timeline) == ("0/3050000", 3)


def test_all_preconditions_hold_for_a_cleanly_stopped_diverged_replica_with_its_wal() -> None:
    facts = facts_of(parse_target_probe(probe_output()))
    checks = rewind_preconditions(facts, replica())
    assert [c.key for c in checks] == [
        "diverged",
        "system_identifier",
        "hints",
        "shutdown",
        "own_wal",
        "source_wal",
        "source_grants",
        "pg_rewind",
    ]
    assert rewind_possible(checks), checks
    assert dict(checks[0].values)["fork_lsn"] == "0/302E7A0"


@pytest.mark.parametrize(
    ("probe", "key", "reason"),
    [
        (
            probe_output(
                CONTROLDATA.replace("setting:                on", "setting:                off")
            ),
            "hints",
            "no_hints",
        ),
        (probe_output(CONTROLDATA.replace("shut down", "in production")), "shutdown", "unclean"),
        (probe_output(segments=("000000010000000000000002",)), "own_wal", "wal_missing"),
        (probe_output(rewind=False), "pg_rewind", "absent"),
    ],
)
def test_each_missing_requirement_says_why(probe: str, key: str, reason: str) -> None:
    checks = {
        c.key: c for c in rewind_preconditions(facts_of(parse_target_probe(probe)), replica())
    }
    assert not checks[key].ok and checks[key].reason == reason
    assert not rewind_possible(checks.values())


def test_a_source_role_without_the_grants_is_named() -> None:
    facts = facts_of(
        parse_target_probe(probe_output()),
        source_missing_grants=("pg_catalog.pg_read_binary_file(text)",),
    )
    checks = {c.key: c for c in rewind_preconditions(facts, replica())}
    assert not checks["source_grants"].ok and checks["source_grants"].reason == "not_granted"
    assert dict(checks["source_grants"].values)["missing"] == "pg_catalog.pg_read_binary_file(text)"


def test_a_primary_that_recycled_the_wal_from_the_fork_is_named() -> None:
    facts = facts_of(
        parse_target_probe(probe_output()), primary_oldest_segment="000000010000000000000004"
    )
    checks = {c.key: c for c in rewind_preconditions(facts, replica())}
    assert not checks["source_wal"].ok and checks["source_wal"].reason == "source_wal_removed"


def test_checksums_stand_in_for_wal_log_hints() -> None:
    text = CONTROLDATA.replace("setting:                on", "setting:                off")
    text = text.replace("checksum version:           0", "checksum version:           1")
    checks = {
        c.key: c
        for c in rewind_preconditions(facts_of(parse_target_probe(probe_output(text))), replica())
    }
    assert checks["hints"].ok and dict(checks["hints"].values)["data_checksums"] == "on"


def test_a_running_target_needs_a_stop_command() -> None:
    facts = facts_of(parse_target_probe(probe_output(status=0)), target_in_recovery=False)
    assert {c.key: c for c in rewind_preconditions(facts, replica())}["shutdown"].ok
    refused = {c.key: c for c in rewind_preconditions(facts, replica(stop_command=None))}
    assert refused["shutdown"].reason == "running_no_stop_command"


def test_a_replica_behind_on_the_primarys_history_is_not_for_rewind() -> None:
    facts = facts_of(parse_target_probe(probe_output()), divergence=None)
    checks = rewind_preconditions(facts, replica())
    assert checks[0].reason == "not_diverged" and not rewind_possible(checks)
    with pytest.raises(ReplbotError):
        build_rewind_plan(cluster_of(replica()), replica(), facts, TAG, "pg2", False)


def test_missing_segments_counts_every_segment_from_the_fork_to_the_end() -> None:
    state = parse_target_probe(probe_output(segments=("000000020000000000000003",)))
    assert missing_segments(state, "0/302E7A0", "0/5000000") == [4, 5]
    assert missing_segments(state, "0/302E7A0", "0/3045F10") == []


def plan(**changes: object) -> tuple[Plan, RewindFacts]:
    fallback = bool(changes.pop("fallback", False))
    target = changes.pop("target", parse_target_probe(probe_output()))
    assert isinstance(target, TargetState)
    facts = facts_of(target, **changes)
    node = replica()
    return build_rewind_plan(cluster_of(node), node, facts, TAG, "pg2", fallback), facts


def test_the_plan_of_a_stopped_replica_in_order() -> None:
    built, _ = plan()
    assert [s.key for s in built.steps] == [
        "check_clean",
        "save_diverged",
        "rewind_dry_run",
        "rewind",
        "restore_files",
        "standby_config",
        "check_config",
        "start",
        "streaming",
    ]
    steps = {s.key: s.action for s in built.steps}
    side = f"{DATA}.replbot-diverged-{TAG}"
    assert dict(built.facts)["side_dir"] == side and side in built.keeps
    save = steps["save_diverged"]
    assert isinstance(save, RemoteCommand)
    assert f"'{side}'" in save.command and "key=0000000000000003" in save.command
    assert "global/pg_control" in save.command and "*.history" in save.command
    rewind = steps["rewind"]
    assert isinstance(rewind, RemoteCommand) and rewind.stream
    assert "--write-recovery-conf" in rewind.command and "--dry-run" not in rewind.command
    assert (
        "application_name=pg2" in rewind.command and "passfile=/etc/replbot/pass" in rewind.command
    )
    assert "password=" not in rewind.command and "pg_basebackup" not in rewind.command
    dry = steps["rewind_dry_run"]
    assert isinstance(dry, RemoteCommand) and "--dry-run" in dry.command and dry.ok_exits == (0,)
    assert steps["streaming"] == Wait(Probe.STREAMING, 120.0, args=("pg2", "pg2"))
    assert dict(built.info)["wal_past_fork_bytes"] == str(0x3045F10 - 0x302E7A0)
    assert dict(built.facts)["target_runs_as_primary"] == "no"


def test_nothing_in_the_plan_deletes() -> None:
    for fallback in (False, True):
        built, _ = plan(fallback=fallback, slot_exists=False)
        for step in built.steps:
            text = describe(step.action) + (describe(step.undo) if step.undo else "")
            assert "rm " not in text and "rmdir" not in text, step


def test_a_target_running_as_a_primary_is_stopped_and_the_approval_says_so() -> None:
    built, _ = plan(
        target=replace(parse_target_probe(probe_output()), running=True),
        target_in_recovery=False,
        target_client_connections=3,
    )
    stop = built.steps[0]
    assert stop.key == "stop" and stop.title.key == "step.stop_live_primary"
    assert built.steps[1].action == Wait(Probe.SERVER_STOPPED, 120.0)
    assert dict(built.info)["target_client_connections"] == "3"
    assert dict(built.facts)["target_runs_as_primary"] == "yes"


def test_a_missing_slot_is_created_first_and_reserves_wal_now() -> None:
    built, _ = plan(slot_exists=False)
    first = built.steps[0].action
    assert built.steps[0].key == "create_slot"
    assert isinstance(first, Sql) and first.target is SqlTarget.PRIMARY
    assert first.params == ("pg2",) and "(%s, true)" in first.statement


def test_the_full_fallback_sets_the_rewound_directory_aside_then_copies() -> None:
    built, _ = plan(fallback=True)
    steps = {s.key: s.action for s in built.steps}
    dry, rewind = steps["rewind_dry_run"], steps["rewind"]
    assert isinstance(dry, RemoteCommand) and dry.ok_exits == (0, 1)
    assert isinstance(rewind, RemoteCommand)
    rewound = f"{DATA}.replbot-rewound-{TAG}"
    head, _, fallback = rewind.command.partition(" || ")
    assert "pg_rewind" in head and f"mv -- '{DATA}' '{rewound}'" in fallback
    assert fallback.index("mv --") < fallback.index("pg_basebackup")
    assert "--slot=pg2" in fallback and "application_name=pg2" in fallback
    assert any(rewound in k for k in built.keeps)


def test_the_side_directory_is_a_sibling_and_never_reused() -> None:
    cmd = RewindCommands(replica(), TAG, "pg2")
    assert str(cmd.side_dir.parent) == str(Path(DATA).parent)
    line = cmd.save_diverged("0/302E7A0", 16 * 1024**2)
    assert line.startswith(f"if [ -e '{cmd.side_dir}' ]") and "exit 3" in line
    assert f"mkdir -m 700 -- '{cmd.side_dir}'" in line


def test_pg_rewind_estimate_and_grants() -> None:
    text = "pg_rewind: need to copy 89 MB (total source directory size is 1143 MB)\r\n"
    assert parse_rewind_estimate(text) == (89 * 1024**2, 1143 * 1024**2)
    assert parse_rewind_estimate("pg_rewind: no rewind required") is None
    grants = grant_statements("repl user")
    assert len(grants) == 4 and all('TO "repl user";' in g for g in grants)
    assert "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)" in grants[3]


class RecordingExecutor:
    """Fails the step whose command contains ``fail_on``; records what ran."""

    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on
        self.ran: list[str] = []
        self.slots: list[SlotChange] = []

    async def remote(self, action: RemoteCommand, on_output: OutputSink) -> CommandResult:
        self.ran.append(action.command)
        failed = self.fail_on in action.command
        return CommandResult(1 if failed else 0, "", "pg_rewind: error: boom" if failed else "")

    async def sql(self, action: Sql) -> None:
        self.ran.append(action.statement)

    async def probe(self, action: Wait) -> bool:
        return True

    async def edit(self, action: FileEdit) -> None:
        self.ran.append(action.path)

    async def slot(self, action: SlotChange) -> None:
        self.slots.append(action)


async def test_a_failed_rewind_stops_the_plan_before_the_server_is_configured_or_started() -> None:
    built, _ = plan()
    executor = RecordingExecutor("--write-recovery-conf")
    result = await PlanRunner(FakeClock()).run(built, executor)
    assert result.failed is not None and result.failed.key == "rewind"
    assert result.done == ["check_clean", "save_diverged", "rewind_dry_run"]
    assert not any("start" in c and "pg_ctlcluster" in c for c in executor.ran)


def test_the_approval_of_a_live_primary_ignores_its_moving_lsn_and_clients() -> None:
    """A target running as a primary moves on between the proposal and the press (its
    insert LSN, the WAL past the fork, its client count): the digest must stay the same;
    the fork point, the system identifier, the side directory and "runs as primary" bind."""
    running = replace(parse_target_probe(probe_output()), running=True)

    def live(lsn: str, clients: int) -> Plan:
        div = classify_divergence(2, lsn, HISTORY, 1, "", "0/3100000")
        facts = facts_of(
            running,
            target_in_recovery=False,
            target_lsn=lsn,
            divergence=div,
            target_client_connections=clients,
        )
        node = replica()
        return build_rewind_plan(cluster_of(node), node, facts, TAG, "pg2", False)

    shown, pressed = live("0/3045F10", 3), live("0/3099000", 7)
    assert plan_digest(shown) == plan_digest(pressed)
    facts = dict(shown.facts)
    assert facts["fork_lsn"] == "0/302E7A0" and facts["target_runs_as_primary"] == "yes"
    assert facts["system_identifier"] == "7443211111111111111"
    assert "target_lsn" not in facts and "target_client_connections" not in facts
    info = dict(shown.info)
    assert info["target_client_connections"] == "3" and info["target_lsn"] == "0/3045F10"
    stopped = live("0/3045F10", 3)
    assert plan_digest(replace(stopped, facts=(*stopped.facts, ("x", "y")))) != plan_digest(shown)


async def test_a_failure_before_pg_rewind_starts_the_stopped_target_again_and_drops_the_slot() -> (
    None
):
    node = replica()
    assert node.start_command
    built, _ = plan(
        target=replace(parse_target_probe(probe_output()), running=True),
        target_in_recovery=False,
        slot_exists=False,
    )
    executor = RecordingExecutor("global/pg_control")  # save_diverged fails
    result = await PlanRunner(FakeClock()).run(built, executor)
    assert result.failed is not None and result.failed.key == "save_diverged"
    assert result.undone == ["stop", "create_slot"], result
    assert executor.ran[-1].endswith(f"|| ( {node.start_command} )")
    assert executor.slots[-1] == SlotChange(SlotOp.DROP, "pg2")


async def test_once_pg_rewind_ran_the_target_is_not_started_again() -> None:
    built, _ = plan(
        target=replace(parse_target_probe(probe_output()), running=True),
        target_in_recovery=False,
        slot_exists=False,
    )
    executor = RecordingExecutor("--write-recovery-conf")
    result = await PlanRunner(FakeClock()).run(built, executor)
    assert result.failed is not None and result.failed.key == "rewind"
    assert result.undone == [] and executor.slots == []
    assert executor.ran[-1].endswith("--write-recovery-conf")


def test_a_target_of_another_cluster_is_not_rewound() -> None:
    facts = facts_of(
        parse_target_probe(probe_output()), primary_system_identifier="7443299999999999999"
    )
    checks = {c.key: c for c in rewind_preconditions(facts, replica())}
    assert not checks["system_identifier"].ok
    assert checks["system_identifier"].reason == "other_system"
    assert ("primary", "7443299999999999999") in checks["system_identifier"].values
    assert not rewind_possible(checks.values())


@pytest.mark.parametrize(
    ("conninfo", "ok"),
    [
        ("host=10.0.0.1 application_name=pg2 passfile=/p", True),
        ("host=10.0.0.1 passfile=/p application_name=pg2", True),
        ("host=10.0.0.1 application_name=pg20 passfile=/p", False),
        ("host=10.0.0.1 application_name=pg2x", False),
    ],
)
def test_the_config_check_matches_the_whole_application_name(
    tmp_path: Path, conninfo: str, ok: bool
) -> None:
    """check_standby_config run by a real shell against a stand-in ``postgres -C``."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "standby.signal").touch()
    fake = tmp_path / "postgres"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$4" in primary_slot_name) echo pg2;; '
        f"primary_conninfo) echo '{conninfo}';; esac\n"
    )
    fake.chmod(0o755)
    node = replace(replica(), data_dir=data, pg_bin_dir=tmp_path)
    command = RewindCommands(node, TAG, "pg2").check_standby_config()
    assert (subprocess.run(["sh", "-c", command], check=False).returncode == 0) is ok
