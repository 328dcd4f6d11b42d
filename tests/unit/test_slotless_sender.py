"""A slotless replica that streams under its configured application_name is found by it
(/status, the monitor rules, /attachslot), not only by its node name."""

from __future__ import annotations

from bot.config import ClusterConfig, NodeConfig
from bot.models import NodeRole
from bot.services.monitor.rules import replica_senders
from bot.services.replication import match_sender
from bot.services.slotless import replica_sender
from tests.unit.fakes import FakePostgres, walsender

CLUSTER = ClusterConfig(
    name="main",
    nodes=(
        NodeConfig(name="pg1", role=NodeRole.PRIMARY, dsn="host=db1", cluster="main"),
        NodeConfig(
            name="pg2",
            role=NodeRole.REPLICA,
            dsn="host=db2",
            cluster="main",
            application_name="walreceiver",
        ),
        NodeConfig(name="pg3", role=NodeRole.REPLICA, dsn="host=db3", cluster="main"),
    ),
)
PG2 = CLUSTER.nodes[1]
# a walsender that calls itself "pg2" but is not pg2 (pg2 streams as "walreceiver")
SENDERS = [walsender(301, "pg2", None, client_addr="10.0.0.9"), walsender(201, "walreceiver", None)]


def test_match_sender_prefers_the_configured_application_name() -> None:
    found = match_sender(PG2, SENDERS)
    assert found is not None and found.pid == 201


async def test_slotless_and_monitor_find_the_replica_by_its_application_name() -> None:
    pg = FakePostgres(walsenders={"pg1": SENDERS}, slot_rows={"pg1": []})
    primary = await pg.snapshot(CLUSTER.primary)
    sender = replica_sender(CLUSTER, PG2, primary)
    assert sender is not None and sender.pid == 201
    assert replica_senders(CLUSTER, primary)["pg2"].pid == 201
