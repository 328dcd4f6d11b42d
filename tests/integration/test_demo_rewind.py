"""The demo's diverged replica (``/demo diverge-replica``) is rewound over the demo's own
config (local shell, no SSH): the rewind path works on what the demo sets up."""

from __future__ import annotations

import tomllib

import pytest

from bot.adapters.shell import LocalConnector, RoutingConnector
from bot.clock import SystemClock
from bot.config import parse_config
from bot.demo import PASSWORD_ENV, demo_config_text, grant_rewind_source
from bot.sandbox import REWIND_READY_SETTINGS, PgBinaries, server_os_user
from bot.services.plans.executor import HostExecutor
from bot.services.plans.runner import PlanRunner
from bot.services.repair.rewind import (
    build_rewind_plan,
    gather_rewind_facts,
    rewind_possible,
    rewind_preconditions,
)
from tests.conftest import LEDGER, short_tmpdir
from tests.integration._helpers import scratch_set
from tests.integration.rebuild_bed import opened, probe

pytestmark = pytest.mark.integration


async def test_the_demo_replica_diverged_by_the_demo_is_rewound_and_streams_again(
    pg_binaries: PgBinaries,
) -> None:
    with scratch_set(pg_binaries, node_settings={"pg2": REWIND_READY_SETTINGS}) as pgset:
        audit = short_tmpdir("rbd") / "audit.sqlite3"
        LEDGER.audit_paths.append(audit)
        text = demo_config_text(pgset, audit)
        config = parse_config(tomllib.loads(text), {PASSWORD_ENV: pgset.bot_password})
        cluster = config.cluster("demo")
        assert cluster is not None
        node = cluster.node("pg2")
        assert node is not None and node.shell == "local"
        timeline = await probe(pgset.diverge_replica, "pg2", 5)
        assert timeline == 2
        assert await probe(pgset.psql, "pg2", "SELECT count(*) FROM replbot_diverged") == "5"
        async with opened(config) as runtime:
            shell = await RoutingConnector(LocalConnector(server_os_user())).connect(node)
            try:
                facts = await gather_rewind_facts(runtime.postgres, shell, cluster, node, 60)
                checks = {c.key: c for c in rewind_preconditions(facts, node)}
                assert checks["source_grants"].reason == "not_granted"  # before the demo's grants
                assert (
                    "pg_read_binary_file(text)" in dict(checks["source_grants"].values)["missing"]
                )
                await probe(grant_rewind_source, pgset)
                facts = await gather_rewind_facts(runtime.postgres, shell, cluster, node, 60)
                assert facts.runs_as_primary
                assert rewind_possible(rewind_preconditions(facts, node))
                plan = build_rewind_plan(
                    cluster, node, facts, "20261202T010000_0demo000", "pg2", False
                )
                executor = HostExecutor(runtime.postgres, shell, cluster, node, 120)
                result = await PlanRunner(SystemClock()).run(plan, executor)
            finally:
                await shell.close()
        assert result.ok, (result.failed, result.failed and result.failed.output)
        await probe(pgset.wait_streaming, "pg2")
        assert await probe(pgset.psql, "pg2", "SELECT to_regclass('replbot_diverged')") == ""
