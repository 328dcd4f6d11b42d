"""Alert lifecycle on a fake clock: hysteresis, repeats, ack/mute, resolve, restart, routing.

The store is the real SQLite adapter (a temporary file) and the formatter the real renderer;
only time is fake. "Sent" here means "in the outbox": delivery is tested separately.
"""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.config import AppConfig, parse_config
from bot.errors import InvalidInput
from bot.models import AlertNotice, AlertRule, Condition, NodeFacts, OutgoingMessage, Severity
from bot.services.monitor.alerts import AlertService
from bot.services.monitor.rules import Evaluation
from handlers import render
from handlers.alerts import AlertRenderer
from tests.unit.fakes import FakeClock
from tests.unit.worded import raises_worded

HOUR = 3600.0

CONFIG = """
[telegram]
alert_chat_ids = [-100]
[audit]
path = "{path}"
[monitor]
repeat_interval = "1h"
[[clusters]]
name = "main"
[[clusters.nodes]]
name = "pg1"
role = "primary"
dsn = "host=db1"
[[clusters.nodes]]
name = "pg2"
role = "replica"
dsn = "host=db2"
slot = "pg2"
[[clusters]]
name = "edge"
[clusters.monitor]
alert_chat_ids = [-300, -301]
message_thread_id = 42
[[clusters.nodes]]
name = "e1"
role = "primary"
dsn = "host=e1"
"""


class Bed:
    """An AlertService over a real store, a fake clock and the real renderer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config: AppConfig = parse_config(tomllib.loads(CONFIG.format(path=path)), {})
        self.clock = FakeClock()
        self.woken: list[int] = []
        self.store = SqliteAlertStore(path)
        self.service = AlertService(
            self.config, self.store, AlertRenderer(HOUR), self.clock, on_enqueued=self.woken.extend
        )

    async def open(self) -> None:
        await self.store.open()
        await self.service.load()

    async def restart(self) -> None:
        """A new process on the same database file."""
        await self.store.close()
        self.store = SqliteAlertStore(self.path)
        self.service = AlertService(self.config, self.store, AlertRenderer(HOUR), self.clock)
        await self.open()

    async def poll(
        self, *conditions: Condition, unknown: Sequence[tuple[str, AlertRule]] = ()
    ) -> list[AlertNotice]:
        return await self.service.process(Evaluation("main", tuple(conditions), frozenset(unknown)))

    async def messages(self, chat: int = -100) -> list[str]:
        rows = await self.store.outbox_rows()
        return [render.to_plain_text(html) for _, c, _, html, _ in rows if c == chat]


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    opened = Bed(tmp_path / "alerts.sqlite3")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.store.close()


def down(node: str = "pg2", polls: int = 1, **kwargs: object) -> Condition:
    return Condition(
        "main",
        node,
        AlertRule.NOT_STREAMING,
        Severity.CRITICAL,
        figures={"reason": "absent from pg_stat_replication on the primary"},
        polls=polls,
        **kwargs,  # type: ignore[arg-type]
    )


def lag(severity: Severity = Severity.WARNING, hold_s: float = 60.0) -> Condition:
    return Condition(
        "main",
        "pg2",
        AlertRule.BYTE_LAG,
        severity,
        figures={"lag_bytes": 70 * 1024**2, "warning": 50 * 1024**2, "critical": 100 * 1024**2},
        hold_s=hold_s,
    )


async def test_a_condition_fires_once_after_n_consecutive_breaches(bed: Bed) -> None:
    assert await bed.poll(down(polls=2)) == []
    await bed.poll()  # cleared: the count starts over
    assert await bed.poll(down(polls=2)) == []
    notices = await bed.poll(down(polls=2))
    assert [n.kind.value for n in notices] == ["firing"]
    await bed.poll(down(polls=2))
    messages = await bed.messages()
    assert len(messages) == 1
    assert messages[0].startswith("🔴 CRITICAL main/pg2: replica pg2 is not streaming")


async def test_a_poll_that_cannot_judge_neither_counts_nor_resets(bed: Bed) -> None:
    await bed.poll(down(polls=2))
    await bed.poll(unknown=[("pg2", AlertRule.NOT_STREAMING)])
    assert [n.kind.value for n in await bed.poll(down(polls=2))] == ["firing"]
    await bed.poll(unknown=[("pg2", AlertRule.NOT_STREAMING)])
    assert [a.key for a in bed.service.firing()] == ["main/pg2/not_streaming"]


async def test_byte_lag_must_hold_for_its_duration(bed: Bed) -> None:
    assert await bed.poll(lag()) == []
    bed.clock.advance(30)
    assert await bed.poll(lag()) == []
    bed.clock.advance(31)
    assert [n.kind.value for n in await bed.poll(lag())] == ["firing"]


async def test_repeats_at_most_every_repeat_interval_while_firing(bed: Bed) -> None:
    await bed.poll(down())
    for _ in range(3):
        bed.clock.advance(HOUR / 4)
        assert await bed.poll(down()) == []
    bed.clock.advance(HOUR / 4)
    assert [n.kind.value for n in await bed.poll(down())] == ["repeat"]
    bed.clock.advance(60)
    assert await bed.poll(down()) == []
    messages = await bed.messages()
    assert len(messages) == 2
    assert messages[1].startswith("🔁 still firing · 🔴 CRITICAL main/pg2")
    assert "alert #1 · for 1 h" in messages[1]


async def test_acknowledged_alerts_stop_repeating_but_still_resolve(bed: Bed) -> None:
    (fired,) = await bed.poll(down())
    acked = await bed.service.acknowledge(fired.alert.id, "oscar")
    assert acked.acked_by == "oscar"
    bed.clock.advance(3 * HOUR)
    assert await bed.poll(down()) == []
    assert [n.kind.value for n in await bed.poll()] == ["resolved"]
    assert (await bed.messages())[-1].startswith("✅ RESOLVED main/pg2")


async def test_a_muted_alert_stops_repeating_until_the_mute_ends(bed: Bed) -> None:
    (fired,) = await bed.poll(down())
    await bed.service.mute_alert(fired.alert.id, "oscar", 2 * HOUR)
    bed.clock.advance(HOUR + 1)
    assert await bed.poll(down()) == []  # a repeat is due, but muted
    bed.clock.advance(HOUR)
    assert [n.kind.value for n in await bed.poll(down())] == ["repeat"]  # the mute ended


async def test_a_node_mute_records_but_does_not_announce_and_unmute_announces(bed: Bed) -> None:
    await bed.service.mute("main", "pg2", 2 * HOUR, "oscar")
    assert await bed.poll(down()) == []
    assert [a.key for a in bed.service.firing()] == ["main/pg2/not_streaming"]
    assert await bed.messages() == []
    assert await bed.service.unmute("main", None) == 1
    assert [n.kind.value for n in await bed.poll(down())] == ["firing"]


async def test_a_resolved_alert_that_was_muted_throughout_says_nothing(bed: Bed) -> None:
    await bed.service.mute("main", None, HOUR, "oscar")
    await bed.poll(down())
    assert await bed.poll() == []
    assert bed.service.firing() == []
    assert await bed.messages() == []


async def test_resolved_message_says_how_long_it_lasted(bed: Bed) -> None:
    await bed.poll(down(polls=2))
    bed.clock.advance(20)
    await bed.poll(down(polls=2))  # fires here, but it began 20 s earlier
    bed.clock.advance(105)
    (resolved,) = await bed.poll()
    assert resolved.kind.value == "resolved"
    assert "lasted 2 min 5 s · alert #1" in (await bed.messages())[-1]


async def test_a_poll_that_cannot_judge_does_not_resolve(bed: Bed) -> None:
    await bed.poll(down())
    assert await bed.poll(unknown=[("pg2", AlertRule.NOT_STREAMING)]) == []
    assert len(bed.service.firing()) == 1


async def test_after_a_restart_a_firing_alert_is_not_fired_again_and_still_resolves(
    bed: Bed,
) -> None:
    await bed.poll(down())
    await bed.restart()
    assert [a.key for a in bed.service.firing()] == ["main/pg2/not_streaming"]
    assert await bed.poll(down()) == []
    bed.clock.advance(10)
    assert [n.kind.value for n in await bed.poll()] == ["resolved"]
    messages = await bed.messages()
    assert [m.split(" ")[1] for m in messages] == ["CRITICAL", "RESOLVED"]


async def test_after_a_restart_acknowledgement_and_mutes_are_remembered(bed: Bed) -> None:
    (fired,) = await bed.poll(down())
    await bed.service.acknowledge(fired.alert.id, "oscar")
    await bed.service.mute("main", None, 3 * HOUR, "oscar")
    await bed.restart()
    assert bed.service.firing()[0].acked_by == "oscar"
    assert [m.cluster for m in bed.service.active_mutes()] == ["main"]


async def test_alerts_firing_in_one_poll_are_one_message_with_buttons_each(bed: Bed) -> None:
    slot_inactive = Condition(
        "main", "pg1", AlertRule.SLOT_INACTIVE, Severity.WARNING, "old", {"retained": 1}
    )
    node_down = Condition(
        "main", "pg2", AlertRule.NODE_DOWN, Severity.CRITICAL, figures={"reason": "refused"}
    )
    await bed.poll(down(), slot_inactive, node_down)
    rows = await bed.store.outbox_rows()
    assert len(rows) == 1
    item = await bed.store.next_pending(-100)
    assert item is not None
    data = [[b.data for b in row] for row in item.message.buttons]
    assert data == [["al:ack:1", "al:mute:1"], ["al:ack:3", "al:mute:3"], ["al:ack:2", "al:mute:2"]]
    text = render.to_plain_text(item.message.html)
    assert text.startswith("🚨 3 alerts · main")
    assert text.index("CRITICAL") < text.index("WARNING")  # critical first


async def test_escalation_is_announced_and_a_value_hovering_at_the_threshold_is_not(
    bed: Bed,
) -> None:
    await bed.poll(lag(hold_s=0))
    assert [n.kind.value for n in await bed.poll(lag(Severity.CRITICAL, hold_s=0))] == ["escalated"]
    assert await bed.poll(lag(Severity.WARNING, hold_s=0)) == []
    assert await bed.poll(lag(Severity.CRITICAL, hold_s=0)) == []
    assert bed.service.firing()[0].severity is Severity.CRITICAL


async def test_role_change_events_are_announced_once_even_across_a_restart(bed: Bed) -> None:
    change = Condition(
        "main",
        "pg2",
        AlertRule.ROLE_CHANGE,
        Severity.CRITICAL,
        figures={"was": "replica", "now": "primary"},
        event=True,
    )
    facts = {"pg2": NodeFacts(False, 2)}
    notices = await bed.service.process(Evaluation("main", (change,), facts=facts))
    assert [n.kind.value for n in notices] == ["event"]
    assert bed.service.firing() == []
    await bed.restart()
    assert bed.service.facts_of("main") == facts
    assert "pg2 changed from replica to primary" in (await bed.messages())[0]


async def test_alerts_go_to_the_clusters_own_chats_and_forum_topic(bed: Bed) -> None:
    node_down = Condition(
        "edge", "e1", AlertRule.NODE_DOWN, Severity.CRITICAL, figures={"reason": "refused"}
    )
    await bed.service.process(Evaluation("edge", (node_down,)))
    for chat in (-300, -301):
        item = await bed.store.next_pending(chat)
        assert item is not None and item.thread_id == 42
    assert await bed.store.next_pending(-100) is None
    assert bed.woken == [-300, -301]


class BrokenRenderer:
    def messages(self, notices: Sequence[AlertNotice]) -> list[OutgoingMessage]:
        raise RuntimeError("renderer broke")


async def test_alert_state_and_its_message_commit_together_or_not_at_all(bed: Bed) -> None:
    broken = AlertService(bed.config, bed.store, BrokenRenderer(), bed.clock)
    await broken.load()
    with pytest.raises(RuntimeError):
        await broken.process(Evaluation("main", (down(),)))
    assert await bed.store.firing() == []
    assert await bed.store.outbox_rows() == []
    assert [n.kind.value for n in await bed.poll(down())] == ["firing"]  # not lost


async def test_acknowledging_a_resolved_alert_is_refused(bed: Bed) -> None:
    (fired,) = await bed.poll(down())
    await bed.poll()
    with raises_worded(InvalidInput, "not firing any more"):
        await bed.service.acknowledge(fired.alert.id, "oscar")
    with raises_worded(InvalidInput, "no alert #99"):
        await bed.service.mute_alert(99, "oscar", HOUR)


async def test_mute_targets_and_durations_are_checked(bed: Bed) -> None:
    assert bed.service.resolve_target("main") == ("main", None)
    assert bed.service.resolve_target("pg2") == ("main", "pg2")
    assert bed.service.resolve_target("edge/e1") == ("edge", "e1")
    with raises_worded(InvalidInput, "neither a cluster"):
        bed.service.resolve_target("nope")
    with raises_worded(InvalidInput, "at least 1 min"):
        await bed.service.mute("main", None, 5, "oscar")
