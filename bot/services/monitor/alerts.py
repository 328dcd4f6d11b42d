"""Alert lifecycle: conditions in, firing / repeated / resolved alerts and their messages out.

For each poll of a cluster (an :class:`~bot.services.monitor.rules.Evaluation`):

* a condition seen for ``polls`` consecutive polls and ``hold_s`` seconds **fires** once; a
  poll that cannot judge it (node data missing) neither counts nor resets it;
* while it fires it is **repeated** at most every ``repeat_interval``, unless acknowledged or
  muted; a rise from warning to critical is announced as an **escalation**;
* when a poll that could judge it no longer finds it, it is **resolved**, with how long it
  lasted (only announced if its firing was);
* role and timeline changes are **events**: announced once, never firing.

Every state change is written to the store in one transaction together with the outbox rows
announcing it, so a restart neither re-fires what was announced nor forgets what was firing,
and a message is never lost between "decided" and "queued". All times come from the Clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.config import AppConfig
from bot.errors import InvalidInput, UnknownCluster, UnknownNode
from bot.models import (
    Alert,
    AlertNotice,
    AlertState,
    Condition,
    Mute,
    NodeFacts,
    NoticeKind,
    Severity,
)
from bot.phrases import Phrase
from bot.ports import AlertFormatter, AlertStore, Clock
from bot.services.monitor.rules import CLUSTER_NODE, Evaluation

log = logging.getLogger(__name__)
MAX_MUTE_S = 30 * 86400.0
MIN_MUTE_S = 60.0


@dataclass
class _Pending:
    """A condition seen but not (yet) firing."""

    condition: Condition
    first_seen: float
    count: int = 0


class AlertService:
    """Fires, repeats and resolves alerts; acknowledges and mutes them on request."""

    def __init__(
        self,
        config: AppConfig,
        store: AlertStore,
        formatter: AlertFormatter,
        clock: Clock,
        on_enqueued: Callable[[Sequence[int]], None] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._formatter = formatter
        self._clock = clock
        self._repeat_s = config.monitor.repeat_interval_s
        self.on_enqueued = on_enqueued
        self._pending: dict[str, _Pending] = {}
        self._firing: dict[str, Alert] = {}
        self._facts: dict[tuple[str, str], NodeFacts] = {}
        self._mutes: list[Mute] = []
        self._lock = asyncio.Lock()
        self._warned_no_route: set[str] = set()

    # --- state ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read firing alerts, node facts and mutes; retire alerts of removed clusters/nodes."""
        async with self._lock:
            now = self._clock.time()
            self._firing.clear()
            self._pending.clear()
            retired: list[Alert] = []
            for alert in await self._store.firing():
                if self._configured(alert.cluster, alert.node):
                    self._firing[alert.key] = alert
                else:
                    retired.append(
                        dataclasses.replace(alert, state=AlertState.RESOLVED, resolved_at=now)
                    )
            if retired:
                async with self._store.transaction() as tx:
                    for alert in retired:
                        await tx.update_alert(alert)
                log.info("retired %d alert(s) of clusters/nodes no longer configured", len(retired))
            self._facts = await self._store.facts()
            self._mutes = await self._store.mutes(now)

    def _configured(self, cluster: str, node: str) -> bool:
        found = self._config.cluster(cluster)
        return found is not None and (node == CLUSTER_NODE or found.node(node) is not None)

    def facts_of(self, cluster: str) -> dict[str, NodeFacts]:
        """node -> last known role and timeline, for the change rules."""
        return {node: f for (c, node), f in self._facts.items() if c == cluster}

    def firing(self) -> list[Alert]:
        """Alerts firing now, critical first, then oldest first."""
        return sorted(self._firing.values(), key=lambda a: (-a.severity.rank, a.fired_at, a.id))

    def active_mutes(self) -> list[Mute]:
        """Cluster and node mutes in force now."""
        now = self._clock.time()
        return [m for m in self._mutes if m.until > now]

    def is_muted(self, cluster: str, node: str, alert: Alert | None = None) -> bool:
        """True when alerts of ``cluster``/``node`` (or this ``alert``) are silenced now."""
        now = self._clock.time()
        if alert is not None and alert.muted_until is not None and alert.muted_until > now:
            return True
        return any(m.until > now and m.covers(cluster, node) for m in self._mutes)

    # --- one poll ------------------------------------------------------------------------

    async def process(self, evaluation: Evaluation) -> list[AlertNotice]:
        """Apply one poll of a cluster; persist and enqueue what changed; return the notices."""
        async with self._lock:
            return await self._process(evaluation)

    async def _process(self, evaluation: Evaluation) -> list[AlertNotice]:
        now = self._clock.time()
        cluster = evaluation.cluster
        present = {c.key: c for c in evaluation.conditions if not c.event}
        inserts: list[tuple[Alert, NoticeKind | None]] = []
        updates: list[tuple[Alert, NoticeKind | None]] = []

        for key, condition in present.items():
            pending = self._pending.get(key)
            if pending is None:
                start = min(now, condition.since) if condition.since is not None else now
                pending = self._pending[key] = _Pending(condition, start)
            pending.condition = condition
            pending.count += 1
            alert = self._firing.get(key)
            if alert is not None:
                change = self._while_firing(alert, condition, now)
                if change is not None:
                    updates.append(change)
                else:
                    self._firing[key] = dataclasses.replace(alert, figures=condition.figures)
            elif pending.count >= condition.polls and now - pending.first_seen >= condition.hold_s:
                fired = self._new_alert(condition, AlertState.FIRING, pending.first_seen, now)
                kind = NoticeKind.FIRING if fired.announced_at is not None else None
                inserts.append((fired, kind))

        for key, pending in list(self._pending.items()):
            c = pending.condition
            if (
                c.cluster == cluster
                and key not in present
                and not evaluation.is_unknown(c.node, c.rule)
            ):
                del self._pending[key]

        for key, alert in list(self._firing.items()):
            if alert.cluster != cluster or key in present:
                continue
            if evaluation.is_unknown(alert.node, alert.rule):
                continue
            resolved = dataclasses.replace(alert, state=AlertState.RESOLVED, resolved_at=now)
            announce = alert.announced_at is not None and not self.is_muted(
                alert.cluster, alert.node, alert
            )
            updates.append((resolved, NoticeKind.RESOLVED if announce else None))

        for condition in evaluation.conditions:
            if condition.event:
                event = self._new_alert(condition, AlertState.EVENT, now, now)
                inserts.append((event, NoticeKind.EVENT if event.announced_at else None))

        facts = {
            node: f for node, f in evaluation.facts.items() if self._facts.get((cluster, node)) != f
        }
        if not inserts and not updates and not facts:
            return []
        return await self._commit(cluster, inserts, updates, facts, now)

    def _new_alert(
        self, condition: Condition, state: AlertState, first_seen: float, now: float
    ) -> Alert:
        """A firing alert (or an event) for ``condition``; unannounced while muted."""
        announced = None if self.is_muted(condition.cluster, condition.node) else now
        return Alert(
            id=0,
            cluster=condition.cluster,
            node=condition.node,
            rule=condition.rule,
            subject=condition.subject,
            severity=condition.severity,
            figures=condition.figures,
            state=state,
            first_seen=first_seen,
            fired_at=now,
            announced_at=announced,
            last_sent_at=announced,
            resolved_at=now if state is AlertState.EVENT else None,
            repeat=condition.repeat and state is AlertState.FIRING,
        )

    def _while_firing(
        self, alert: Alert, condition: Condition, now: float
    ) -> tuple[Alert, NoticeKind | None] | None:
        """What a poll that still sees a firing alert changes (None: nothing to store)."""
        muted = self.is_muted(alert.cluster, alert.node, alert)
        escalated = condition.severity.rank > alert.severity.rank
        # Severity only rises while firing, so a value hovering at a threshold cannot flap.
        severity = condition.severity if escalated else alert.severity
        current = dataclasses.replace(alert, figures=condition.figures, severity=severity)
        if muted:
            return (current, None) if escalated else None
        if alert.announced_at is None:
            sent = dataclasses.replace(current, announced_at=now, last_sent_at=now)
            return sent, NoticeKind.FIRING
        if escalated:
            return dataclasses.replace(current, last_sent_at=now), NoticeKind.ESCALATED
        due = alert.last_sent_at is None or now - alert.last_sent_at >= self._repeat_s
        if alert.repeat and alert.acked_at is None and due:
            return dataclasses.replace(current, last_sent_at=now), NoticeKind.REPEAT
        return None

    async def _commit(
        self,
        cluster: str,
        inserts: list[tuple[Alert, NoticeKind | None]],
        updates: list[tuple[Alert, NoticeKind | None]],
        facts: dict[str, NodeFacts],
        now: float,
    ) -> list[AlertNotice]:
        chats, thread = self._config.alert_route(cluster)
        stored: list[Alert] = []
        notices: list[AlertNotice] = []
        async with self._store.transaction() as tx:
            for alert, kind in inserts:
                saved = await tx.insert_alert(alert)
                stored.append(saved)
                if kind is not None:
                    notices.append(AlertNotice(kind, saved, now))
            for alert, kind in updates:
                await tx.update_alert(alert)
                stored.append(alert)
                if kind is not None:
                    notices.append(AlertNotice(kind, alert, now))
            for node, f in facts.items():
                await tx.set_facts(cluster, node, f)
            if notices and chats:
                for message in self._formatter.messages(_ordered(notices)):
                    for chat in chats:
                        await tx.enqueue(chat, thread, message)
        # Memory follows the database only once the transaction committed.
        for alert in stored:
            if alert.state is AlertState.FIRING:
                self._firing[alert.key] = alert
            else:
                self._firing.pop(alert.key, None)
        for node, f in facts.items():
            self._facts[(cluster, node)] = f
        if notices and not chats and cluster not in self._warned_no_route:
            self._warned_no_route.add(cluster)
            log.warning("alerts of cluster %s have no chat to go to (alert_chat_ids)", cluster)
        if notices and chats and self.on_enqueued is not None:
            self.on_enqueued(chats)
        return notices

    # --- from the chat -------------------------------------------------------------------

    async def get(self, alert_id: int) -> Alert:
        """A stored alert by id (InvalidInput if there is none)."""
        alert = await self._store.get(alert_id)
        if alert is None:
            raise InvalidInput(Phrase.of("error.alert.none", alert=alert_id))
        return alert

    async def _firing_by_id(self, alert_id: int) -> Alert:
        for alert in self._firing.values():
            if alert.id == alert_id:
                return alert
        stored = await self.get(alert_id)
        if stored.state is AlertState.RESOLVED:
            raise InvalidInput(Phrase.of("error.alert.resolved", alert=alert_id))
        raise InvalidInput(
            Phrase.of("error.alert.not_firing", alert=alert_id, state=stored.state.value)
        )

    async def acknowledge(self, alert_id: int, by: str) -> Alert:
        """Stop the repeats of a firing alert; it still resolves (and says so) as usual."""
        async with self._lock:
            alert = await self._firing_by_id(alert_id)
            if alert.acked_at is not None:
                return alert
            acked = dataclasses.replace(alert, acked_by=by, acked_at=self._clock.time())
            async with self._store.transaction() as tx:
                await tx.update_alert(acked)
            self._firing[acked.key] = acked
            return acked

    async def mute_alert(self, alert_id: int, by: str, duration_s: float) -> Alert:
        """Silence one firing alert (repeats and its resolved message) for ``duration_s``."""
        duration_s = _mute_duration(duration_s)
        async with self._lock:
            alert = await self._firing_by_id(alert_id)
            muted = dataclasses.replace(alert, muted_until=self._clock.time() + duration_s)
            async with self._store.transaction() as tx:
                await tx.update_alert(muted)
            self._firing[muted.key] = muted
            log.info("alert #%d muted by %s for %.0f s", alert_id, by, duration_s)
            return muted

    def resolve_target(self, text: str) -> tuple[str, str | None]:
        """'main' -> ('main', None); 'pg2' or 'main/pg2' -> ('main', 'pg2')."""
        cluster_name, _, node_name = text.partition("/")
        if node_name:
            cluster = self._config.cluster(cluster_name)
            if cluster is None:
                raise UnknownCluster(Phrase.of("error.cluster.unknown_bare", cluster=cluster_name))
            if cluster.node(node_name) is None:
                raise UnknownNode(
                    Phrase.of("error.node.unknown_in", node=node_name, cluster=cluster_name)
                )
            return cluster.name, node_name
        if self._config.cluster(text) is not None:
            return text, None
        owners = [c.name for c in self._config.clusters if c.node(text) is not None]
        if not owners:
            known = ", ".join(c.name for c in self._config.clusters)
            raise UnknownNode(Phrase.of("error.alert.no_target", name=text, known=known))
        if len(owners) > 1:
            raise UnknownNode(Phrase.of("error.alert.ambiguous_node", node=text))
        return owners[0], text

    async def mute(self, cluster: str, node: str | None, duration_s: float, by: str) -> Mute:
        """Silence every alert of a cluster or a node for ``duration_s``."""
        duration_s = _mute_duration(duration_s)
        async with self._lock:
            now = self._clock.time()
            mute = await self._store.add_mute(cluster, node, now + duration_s, by, now)
            self._mutes = await self._store.mutes(now)
            return mute

    async def unmute(self, cluster: str, node: str | None) -> int:
        """End the mutes of a cluster (and of its nodes and alerts) or of a node."""
        async with self._lock:
            now = self._clock.time()
            ended = await self._store.remove_mutes(cluster, node, now)
            unmuted = [
                dataclasses.replace(a, muted_until=None)
                for a in self._firing.values()
                if a.cluster == cluster
                and (node is None or a.node == node)
                and a.muted_until is not None
                and a.muted_until > now
            ]
            if unmuted:
                async with self._store.transaction() as tx:
                    for alert in unmuted:
                        await tx.update_alert(alert)
                for alert in unmuted:
                    self._firing[alert.key] = alert
            self._mutes = await self._store.mutes(now)
            return ended + len(unmuted)

    def counts(self) -> dict[tuple[str, Severity], int]:
        """(cluster, severity) -> number of firing alerts, for the metrics."""
        counts: dict[tuple[str, Severity], int] = {}
        for alert in self._firing.values():
            key = (alert.cluster, alert.severity)
            counts[key] = counts.get(key, 0) + 1
        return counts


def _mute_duration(duration_s: float) -> float:
    if not MIN_MUTE_S <= duration_s <= MAX_MUTE_S:
        raise InvalidInput(Phrase.of("error.alert.mute_range"))
    return duration_s


_ORDER = {
    NoticeKind.FIRING: 0,
    NoticeKind.ESCALATED: 1,
    NoticeKind.EVENT: 2,
    NoticeKind.REPEAT: 3,
    NoticeKind.RESOLVED: 4,
}


def _ordered(notices: list[AlertNotice]) -> list[AlertNotice]:
    """New trouble first (critical before warning), repeats next, good news last."""
    return sorted(notices, key=lambda n: (_ORDER[n.kind], -n.alert.severity.rank, n.alert.id))
