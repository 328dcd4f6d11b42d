"""How /status names a configured replica that the primary does not see streaming."""

from __future__ import annotations

from bot.config import NodeConfig
from bot.models import NodeRole, NodeSnapshot
from bot.services.replication import PROMOTED_STATE, _replica_view
from handlers import render
from handlers.render.status import _replica_lines

PG2 = NodeConfig(name="pg2", role=NodeRole.REPLICA, dsn="host=db2", cluster="main", slot="pg2")


def test_a_promoted_replica_is_shown_running_as_a_primary_not_absent() -> None:
    """Seen in the demo after /demo diverge-replica: "pg2 replica · absent" while it ran."""
    promoted = NodeSnapshot(cluster="main", node="pg2", at=0.0, in_recovery=False, timeline=2)
    view = _replica_view(PG2, None, promoted, None, primary_up=True)
    assert view.state == PROMOTED_STATE
    text = render.to_plain_text("\n".join(_replica_lines(view)))
    assert text.startswith("❌ pg2 replica · running as a primary"), text


def test_a_replica_the_primary_does_not_see_and_that_does_not_answer_is_absent() -> None:
    assert _replica_view(PG2, None, None, None, primary_up=True).state == "absent"
