"""/attachslot's runner on fakes: a failure after the slot was created drops that slot again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.config import ClusterConfig, NodeConfig
from bot.errors import ServerRefused, SlotChangeRefused
from bot.models import NodeRole
from bot.services.slotless import SlotlessService
from bot.services.slotview import SlotOverrides
from handlers import render
from tests.unit.fakes import FakeClock, FakePostgres, slot, walsender
from tests.unit.worded import english_value, raises_worded

CLUSTER = ClusterConfig(
    name="main",
    nodes=(
        NodeConfig(name="pg1", role=NodeRole.PRIMARY, dsn="host=db1", cluster="main"),
        NodeConfig(name="pg2", role=NodeRole.REPLICA, dsn="host=db2", cluster="main"),
    ),
)


@dataclass
class PlanPostgres(FakePostgres):
    """FakePostgres that also runs plan statements: slots appear and vanish, the rest is
    recorded; ``refuse`` makes a statement fail as the server would."""

    statements: list[tuple[str, str]] = field(default_factory=list)
    refuse: dict[str, ServerRefused] = field(default_factory=dict)

    missing: list[str] = field(default_factory=list)

    async def missing_alter_system_privileges(self, node: NodeConfig, parameter: str) -> list[str]:
        return list(self.missing)

    async def run_plan_sql(
        self, node: NodeConfig, statement: str, params: Sequence[str | int]
    ) -> None:
        self.statements.append((node.name, statement))
        for fragment, exc in self.refuse.items():
            if fragment in statement:
                raise exc
        rows = self.slot_rows.setdefault(node.name, [])
        if "pg_create_physical_replication_slot" in statement:
            rows.append(slot(str(params[0]), False))
        elif "pg_drop_replication_slot" in statement:
            rows[:] = [s for s in rows if s.name != params[0]]


def service(pg: PlanPostgres, clock: FakeClock, overrides: SlotOverrides) -> SlotlessService:
    return SlotlessService((CLUSTER,), pg, overrides, clock, verify_timeout_s=5)


def slotless_pg() -> PlanPostgres:
    return PlanPostgres(walsenders={"pg1": [walsender(201, "pg2", None)]}, slot_rows={"pg1": []})


async def test_a_verify_that_never_holds_undoes_every_step_and_drops_the_new_slot() -> None:
    pg, clock, overrides = slotless_pg(), FakeClock(), SlotOverrides()
    slotless = service(pg, clock, overrides)
    planned = await slotless.attach_plan("pg2", None, None)
    # the walsender never moves onto the slot (the fake does not reconnect the replica)
    outcome = await slotless.attach("pg2", None, None, planned.digest)
    assert not outcome.ok
    assert outcome.done == ("create_slot", "set_primary_slot_name")
    assert outcome.failed_step == "verify"
    assert outcome.undone == ("set_primary_slot_name", "create_slot")
    assert pg.slot_rows["pg1"] == []
    assert [s for _, s in pg.statements][-3:] == [  # the RESET is reloaded before the drop
        "ALTER SYSTEM RESET primary_slot_name",
        "SELECT pg_catalog.pg_reload_conf()",
        "SELECT pg_catalog.pg_drop_replication_slot(%s)",
    ]
    assert overrides.get("main", "pg2") == (False, None)  # nothing recorded
    text = render.to_plain_text(render.slot_change_outcome(outcome))
    assert text.startswith("❌ /attachslot main/pg2 failed at verify: streaming not reached")
    assert "the slot pg2 this run created was dropped again" in text


async def test_a_refused_reload_resets_the_setting_and_drops_the_slot() -> None:
    pg, clock = slotless_pg(), FakeClock()
    pg.refuse["pg_reload_conf"] = ServerRefused(
        "pg2", "42501", "permission denied for function pg_reload_conf"
    )
    slotless = service(pg, clock, SlotOverrides())
    planned = await slotless.attach_plan("pg2", "pg2_new", None)
    outcome = await slotless.attach("pg2", "pg2_new", None, planned.digest)
    assert outcome.failed_step == "set_primary_slot_name"  # its reload failed
    assert "permission denied" in english_value(outcome.error)
    assert outcome.undone == ("set_primary_slot_name", "create_slot")
    assert ("pg2", "ALTER SYSTEM RESET primary_slot_name") in pg.statements
    assert pg.slot_rows["pg1"] == []


async def test_a_plan_that_changed_since_it_was_shown_runs_nothing() -> None:
    pg, clock = slotless_pg(), FakeClock()
    slotless = service(pg, clock, SlotOverrides())
    shown = await slotless.attach_plan("pg2", None, None)
    with raises_worded(SlotChangeRefused, "plan changed"):
        await slotless.attach("pg2", "other_name", None, shown.digest)
    assert pg.statements == []


async def test_a_replica_already_on_a_slot_is_refused() -> None:
    pg = PlanPostgres(
        walsenders={"pg1": [walsender(201, "pg2", "pg2")]},
        slot_rows={"pg1": [slot("pg2", True, 201)]},
    )
    with raises_worded(SlotChangeRefused, "already streams through slot pg2"):
        await service(pg, FakeClock(), SlotOverrides()).attach_plan("pg2", None, None)


async def test_missing_privileges_refuse_before_anything_changes() -> None:
    pg = slotless_pg()
    pg.missing = ["GRANT ALTER SYSTEM ON PARAMETER primary_slot_name"]
    with raises_worded(SlotChangeRefused, "needs GRANT ALTER SYSTEM ON PARAMETER"):
        await service(pg, FakeClock(), SlotOverrides()).attach_plan("pg2", None, None)
    assert pg.statements == []
