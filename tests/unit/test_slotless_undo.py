"""/detachslot and /attachslot on a replica that really follows its configuration.

The fake replica streams with the ``primary_slot_name`` it last *reloaded*; it streams under
the application_name ``walreceiver`` (not its node name). Found by review (issue 12).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.config import ClusterConfig, NodeConfig
from bot.models import NodeRole, NodeSnapshot
from bot.services.slotless import SlotlessService
from bot.services.slotview import SlotOverrides
from tests.unit.fakes import FakeClock, slot, walsender
from tests.unit.test_slotless_runner import PlanPostgres


def cluster(application_name: str | None, slot_name: str | None = "pg2") -> ClusterConfig:
    return ClusterConfig(
        name="main",
        nodes=(
            NodeConfig(name="pg1", role=NodeRole.PRIMARY, dsn="host=db1", cluster="main"),
            NodeConfig(
                name="pg2",
                role=NodeRole.REPLICA,
                dsn="host=db2",
                cluster="main",
                slot=slot_name,
                application_name=application_name,
            ),
        ),
    )


@dataclass
class Replica(PlanPostgres):
    """After a reload the replica streams with what was SET (``pending``); ``stuck`` keeps
    its WAL receiver from reconnecting (a verify that never holds)."""

    pending: str | None = "pg2"
    active: str | None = "pg2"
    stuck: bool = False

    async def snapshot(self, node: NodeConfig) -> NodeSnapshot:
        snap = await super().snapshot(node)
        if snap.receiver is not None:
            snap = replace(snap, receiver=replace(snap.receiver, slot_name=self.active))
        return snap

    async def run_plan_sql(
        self, node: NodeConfig, statement: str, params: Sequence[str | int]
    ) -> None:
        await super().run_plan_sql(node, statement, params)
        if "RESET primary_slot_name" in statement:
            self.pending = None
        elif "SET primary_slot_name" in statement:
            self.pending = str(params[0])
        elif "pg_reload_conf" in statement and not self.stuck:
            self.active = self.pending
        self.walsenders["pg1"] = [walsender(201, "walreceiver", self.active)]
        self.slot_rows["pg1"] = [
            replace(s, active=s.name == self.active, active_pid=201 if s.active else None)
            for s in (replace(r, active=r.name == self.active) for r in self.slot_rows["pg1"])
        ]


def on_slot() -> Replica:
    return Replica(
        walsenders={"pg1": [walsender(201, "walreceiver", "pg2")]},
        slot_rows={"pg1": [slot("pg2", True, 201)]},
    )


def off_slot() -> Replica:
    return Replica(
        walsenders={"pg1": [walsender(201, "walreceiver", None)]},
        slot_rows={"pg1": []},
        pending=None,
        active=None,
    )


async def test_detach_verifies_through_the_configured_application_name() -> None:
    pg = on_slot()
    svc = SlotlessService((cluster("walreceiver"),), pg, SlotOverrides(), FakeClock(), 5)
    planned = await svc.detach_plan("pg2", None)
    outcome = await svc.detach("pg2", None, planned.digest)
    assert outcome.ok, outcome
    assert pg.slot_rows["pg1"] == [] and pg.pending is None and pg.active is None


async def test_detach_verifies_through_the_walsender_that_held_the_slot() -> None:
    """No application_name configured: the walsender is the one whose pid the slot showed."""
    pg = on_slot()
    svc = SlotlessService((cluster(None),), pg, SlotOverrides(), FakeClock(), 5)
    planned = await svc.detach_plan("pg2", None)
    outcome = await svc.detach("pg2", None, planned.digest)
    assert outcome.ok, outcome
    assert pg.slot_rows["pg1"] == [] and pg.pending is None


async def test_a_failed_verify_after_the_drop_never_points_back_at_the_dropped_slot() -> None:
    pg = on_slot()
    svc = SlotlessService((cluster("walreceiver"),), pg, SlotOverrides(), FakeClock(), 5)
    planned = await svc.detach_plan("pg2", None)

    original = pg.run_plan_sql

    async def drop_then_vanish(
        node: NodeConfig, statement: str, params: Sequence[str | int]
    ) -> None:
        await original(node, statement, params)
        if "pg_drop_replication_slot" in statement:
            pg.walsenders["pg1"] = []  # the replica never shows up streaming again

    pg.run_plan_sql = drop_then_vanish  # type: ignore[method-assign]
    outcome = await svc.detach("pg2", None, planned.digest)
    assert "drop_slot" in outcome.done
    assert outcome.failed_step == "verify"
    assert outcome.undone == ()
    assert pg.slot_rows["pg1"] == []
    assert pg.pending is None  # primary_slot_name was not SET back to the dropped slot
    assert not any("SET primary_slot_name = %s" in s for _, s in pg.statements)


async def test_a_failed_attach_resets_and_reloads_before_dropping_the_new_slot() -> None:
    pg = off_slot()
    pg.stuck = True  # the reload does not move the receiver: verify times out
    svc = SlotlessService((cluster("walreceiver", None),), pg, SlotOverrides(), FakeClock(), 5)
    planned = await svc.attach_plan("pg2", None, None)
    outcome = await svc.attach("pg2", None, None, planned.digest)
    assert outcome.failed_step == "verify"
    assert outcome.undo_errors == ()
    assert pg.slot_rows["pg1"] == []  # the new slot does not hoard WAL
    statements = [s for _, s in pg.statements]
    reset = statements.index("ALTER SYSTEM RESET primary_slot_name")
    assert statements[reset + 1] == "SELECT pg_catalog.pg_reload_conf()"
    assert pg.pending is None
