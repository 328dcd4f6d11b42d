"""The rewind path of /repair on real PostgreSQL over a real sshd: the plan built from what
both sides show, run by the one PlanRunner through the HostExecutor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bot.adapters.ssh import SshConnector
from bot.clock import SystemClock
from bot.config import AppConfig, ClusterConfig, NodeConfig
from bot.models import RebuildState
from bot.ports import Postgres, RemoteShell
from bot.sandbox import PgBinaries
from bot.services.plans.executor import HostExecutor
from bot.services.plans.runner import PlanResult, PlanRunner
from bot.services.repair.models import PathName
from bot.services.repair.rewind import (
    RewindCommands,
    RewindFacts,
    build_rewind_plan,
    dry_run_rewind,
    gather_rewind_facts,
    parse_identify_system,
    parse_rewind_estimate,
    parse_timeline_history,
    rewind_possible,
    rewind_preconditions,
)
from bot.services.repair.timeline import classify_divergence, parse_history
from tests.integration.rebuild_bed import CLUSTER, REPLICA, RebuildBed, opened, probe
from tests.integration.repair_bed import (
    COMMON_ROWS,
    DIVERGED_ROWS,
    PRIMARY_ROWS,
    diverge,
    repair_bed,
    sides,
    waldump_inserts,
)

pytestmark = pytest.mark.integration
TAG = "20261202T010000_0badcafe"


@dataclass
class Host:
    """The bot's view of pg2 for one test: its config, a Postgres adapter and an SSH shell."""

    cluster: ClusterConfig
    node: NodeConfig
    pg: Postgres
    shell: RemoteShell

    def executor(self) -> HostExecutor:
        return HostExecutor(self.pg, self.shell, self.cluster, self.node, 120)

    async def facts(self) -> RewindFacts:
        return await gather_rewind_facts(self.pg, self.shell, self.cluster, self.node, 60)


@contextlib.asynccontextmanager
async def host_of(config: AppConfig) -> AsyncIterator[Host]:
    cluster = config.cluster(CLUSTER)
    assert cluster is not None
    node = cluster.node(REPLICA)
    assert node is not None
    async with opened(config) as runtime:
        shell = await SshConnector().connect(node)
        try:
            yield Host(cluster, node, runtime.postgres, shell)
        finally:
            await shell.close()


class Output(list[str]):
    async def __call__(self, chunk: str) -> None:
        self.append(chunk)


async def run(host: Host, facts: RewindFacts, fallback: bool = False) -> tuple[PlanResult, str]:
    plan = build_rewind_plan(host.cluster, host.node, facts, TAG, REPLICA, fallback)
    output = Output()
    result = await PlanRunner(SystemClock()).run(plan, host.executor(), on_output=output)
    return result, "".join(output)


def side_dir(bed: RebuildBed) -> Path:
    data = bed.replica.data_dir
    return data.parent / f"{data.name}.replbot-diverged-{TAG}"


def wal_files(directory: Path) -> set[str]:
    return {p.name for p in (directory / "pg_wal").iterdir() if len(p.name) >= 24}


async def test_rewind_brings_a_promoted_replica_back_and_keeps_what_it_discarded(
    pg_binaries: PgBinaries,
) -> None:
    with repair_bed(pg_binaries) as bed:
        div = await probe(diverge, bed)
        config = bed.config()
        async with host_of(config) as host:
            facts = await host.facts()
            assert facts.divergence is not None and facts.divergence.kind == "diverged"
            assert (facts.target_timeline, facts.primary_timeline) == (2, 1)
            assert facts.divergence.fork_timeline == 1
            assert facts.divergence.wal_past_fork_bytes > 0
            checks = rewind_preconditions(facts, host.node)
            assert rewind_possible(checks), checks
            dry = await dry_run_rewind(host.shell, host.node, REPLICA, 60)
            assert dry.ok and dry.copy_bytes is not None and dry.source_bytes, dry
            result, output = await run(host, facts)
        assert result.ok, (result.failed, output[-3000:])
        estimate = parse_rewind_estimate(output)
        assert estimate is not None and 0 < estimate[0] <= estimate[1], output[-2000:]
        await probe(bed.wait_streaming)
        # the primary's rows arrived, the diverged ones are gone from the table
        expected = {"common": COMMON_ROWS, "primary": PRIMARY_ROWS}
        for _ in range(200):
            if await probe(sides, bed) == expected:
                break
            await asyncio.sleep(0.05)
        assert await probe(sides, bed) == expected
        # ... and present in the saved WAL, readable with pg_waldump
        saved = side_dir(bed)
        found = await probe(
            waldump_inserts, bed, saved / "pg_wal", div, 2, facts.divergence.fork_lsn
        )
        assert found == DIVERGED_ROWS
        assert (saved / "global" / "pg_control").is_file()
        assert (saved / "pg_wal" / "00000002.history").is_file()
        # it streams under its own name on its slot, seen from both sides
        assert await probe(bed.slot_holder) == f"{REPLICA}|streaming|async"
        assert await probe(bed.receiver_status) == "streaming"
        auto = (bed.replica.data_dir / "postgresql.auto.conf").read_text()
        assert f"application_name={REPLICA}" in auto and "primary_slot_name = 'pg2'" in auto
        assert "password" not in auto


async def test_rewind_is_impossible_when_the_target_recycled_its_wal_and_nothing_is_lost(
    newest_pg_binaries: PgBinaries,
) -> None:
    with repair_bed(newest_pg_binaries, replica_wal_keep_size="0") as bed:
        await probe(lambda: diverge(bed, recycle_replica_wal=True))
        before = wal_files(bed.replica.data_dir)
        async with host_of(bed.config()) as host:
            facts = await host.facts()
            checks = {c.key: c for c in rewind_preconditions(facts, host.node)}
            dry = await dry_run_rewind(host.shell, host.node, REPLICA, 60)
            result, output = await run(host, facts)
        assert not dry.ok and "could not find previous WAL record" in dry.tail, dry
        assert checks["hints"].ok and checks["diverged"].ok
        # the segment check sees it before anything runs, and pg_rewind's dry-run agrees
        assert not checks["own_wal"].ok and checks["own_wal"].reason == "wal_missing"
        assert not rewind_possible(checks.values())
        assert result.failed is not None and result.failed.key == "rewind_dry_run", output
        assert "could not find previous WAL record" in result.failed.output, output
        assert "rewind" not in result.done
        assert wal_files(bed.replica.data_dir) == before  # the data directory is untouched
        assert wal_files(side_dir(bed))  # and its WAL was saved before anything ran


async def test_rewind_is_refused_without_wal_log_hints_and_nothing_is_deleted(
    newest_pg_binaries: PgBinaries,
) -> None:
    with repair_bed(newest_pg_binaries, wal_log_hints=False) as bed:
        await probe(diverge, bed)
        before = wal_files(bed.replica.data_dir)
        async with host_of(bed.config()) as host:
            facts = await host.facts()
            checks = {c.key: c for c in rewind_preconditions(facts, host.node)}
            assert not checks["hints"].ok and checks["hints"].reason == "no_hints"
            assert not rewind_possible(checks.values())
            result, output = await run(host, facts)  # run anyway: pg_rewind refuses too
        assert result.failed is not None and result.failed.key == "rewind_dry_run", output
        assert "wal_log_hints" in result.failed.output
        assert wal_files(bed.replica.data_dir) == before
        assert bed.replica.data_dir.is_dir() and side_dir(bed).is_dir()


async def old_primary_view(bed: RebuildBed, host: Host, facts: RewindFacts) -> None:
    """Seen the other way round, pg1 is an old primary after a failover to pg2: pg2's
    TIMELINE_HISTORY (over a replication connection from the replica host) and pg1's
    position say pg1 diverged at the same fork point."""
    assert host.node.replication is not None and facts.divergence is not None
    to_pg2 = replace(host.node.replication, port=bed.replica.port)
    cmd = RewindCommands(replace(host.node, replication=to_pg2), TAG, REPLICA)
    ident = await host.shell.run(cmd.identify_system(), 30)
    _, timeline, pg2_lsn = parse_identify_system(ident.stdout)
    history = await host.shell.run(cmd.timeline_history(timeline), 30)
    assert history.exit_status == 0, history.stderr
    text = parse_timeline_history(history.stdout)
    assert timeline == 2 and parse_history(text)[0].timeline == 1
    pg1_lsn = await probe(bed.psql, "pg1", "SELECT pg_current_wal_insert_lsn()")
    seen = classify_divergence(1, pg1_lsn, "", timeline, text, pg2_lsn)
    assert seen is not None and seen.kind == "diverged"
    assert seen.fork_lsn == facts.divergence.fork_lsn and seen.fork_timeline == 1


async def test_a_replica_running_as_a_primary_is_stopped_then_rewound(
    pg_binaries: PgBinaries,
) -> None:
    with repair_bed(pg_binaries) as bed:
        await probe(lambda: diverge(bed, stop=False))
        async with host_of(bed.config()) as host:
            facts = await host.facts()
            assert facts.runs_as_primary and facts.target_timeline == 2
            assert facts.divergence is not None and facts.divergence.kind == "diverged"
            assert rewind_possible(rewind_preconditions(facts, host.node))
            await old_primary_view(bed, host, facts)
            plan = build_rewind_plan(host.cluster, host.node, facts, TAG, REPLICA, False)
            assert plan.steps[0].key == "stop"
            assert plan.steps[0].title.key == "step.stop_live_primary"
            result, output = await run(host, facts)
        assert result.ok, (result.failed, output[-3000:])
        await probe(bed.wait_streaming)
        assert await probe(bed.slot_holder) == f"{REPLICA}|streaming|async"
        expected = {"common": COMMON_ROWS, "primary": PRIMARY_ROWS}
        for _ in range(200):
            if await probe(sides, bed) == expected:
                break
            await asyncio.sleep(0.05)
        assert await probe(sides, bed) == expected


async def test_with_the_fallback_an_impossible_rewind_becomes_a_full_copy_keeping_the_old_data(
    newest_pg_binaries: PgBinaries,
) -> None:
    with repair_bed(newest_pg_binaries, replica_wal_keep_size="0") as bed:
        await probe(lambda: diverge(bed, recycle_replica_wal=True))
        before = wal_files(bed.replica.data_dir)
        async with host_of(bed.config()) as host:
            facts = await host.facts()
            result, output = await run(host, facts, fallback=True)
        assert result.ok, (result.failed, output[-3000:])
        assert "full copy follows" in output
        await probe(bed.wait_streaming)
        assert await probe(bed.slot_holder) == f"{REPLICA}|streaming|async"
        assert await probe(sides, bed) == {"common": COMMON_ROWS, "primary": PRIMARY_ROWS}
        data = bed.replica.data_dir
        rewound = data.parent / f"{data.name}.replbot-rewound-{TAG}"
        assert rewound.is_dir() and wal_files(side_dir(bed))  # nothing was deleted
        assert wal_files(side_dir(bed)) <= before


async def test_the_repair_service_rewinds_a_replica_left_running_as_a_primary(
    pg_binaries: PgBinaries,
) -> None:
    """The headline demo: the proposal is shown, the live target writes on (its LSN, the WAL
    past the fork and its client count move), the press still starts the approved plan."""
    with repair_bed(pg_binaries) as bed:
        await probe(lambda: diverge(bed, stop=False))
        async with opened(bed.config()) as runtime:
            service = runtime.services.repair
            assert service is not None
            proposal = await service.diagnose(REPLICA)
            assert proposal.chosen is PathName.REWIND, proposal.options
            assert proposal.plan is not None and proposal.plan.steps[0].key == "stop"
            assert dict(proposal.plan.facts)["target_runs_as_primary"] == "yes"
            await probe(
                bed.psql,
                REPLICA,
                "CREATE TABLE after_proposal AS SELECT g FROM generate_series(1, 1000) g",
            )
            await service.start(REPLICA, CLUSTER, proposal.tag, proposal.digest, 1, 1)
            job = await service.wait(CLUSTER, REPLICA)
            assert job is not None and job.state is RebuildState.SUCCEEDED, job
        await probe(bed.wait_streaming)
        assert await probe(bed.slot_holder) == f"{REPLICA}|streaming|async"
        assert await probe(bed.receiver_status) == "streaming"
        expected = {"common": COMMON_ROWS, "primary": PRIMARY_ROWS}
        for _ in range(200):
            if await probe(sides, bed) == expected:
                break
            await asyncio.sleep(0.05)
        assert await probe(sides, bed) == expected
