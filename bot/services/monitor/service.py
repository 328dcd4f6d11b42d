"""MonitorService: polls every node of every monitored cluster and feeds the alert lifecycle.

Each node has its own poller task on a common tick grid (every ``interval``), so a slow or
dead node never delays the polls of the others: its poll is bounded by ``timeout`` and the
next one waits for the next tick. Each cluster has an evaluator task that runs the rules as
soon as every node of the cluster answered the current tick — or, if one is still hanging,
after a short settle time (at most 1 s) with that node marked "no fresh data", which the
rules treat as unknown rather than as healthy or broken.

The tasks belong to the service: :meth:`start` creates them, :meth:`stop` cancels them and
closes the probe's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping

from bot.config import AppConfig, ClusterConfig, NodeConfig
from bot.errors import NodeUnavailable
from bot.models import NodeSnapshot, ReplicaSample, SlotSample, replay_lag_seconds
from bot.phrases import Phrase
from bot.ports import Clock, HistoryStore, MonitorProbe
from bot.services.monitor.alerts import AlertService
from bot.services.monitor.metrics import Metrics
from bot.services.monitor.rules import GrowthTracker, evaluate, replica_senders
from bot.services.slotview import SlotOverrides, replica_position

log = logging.getLogger(__name__)
MAX_SETTLE_S = 1.0


class _Watch:
    """The latest polls of one cluster's nodes, shared by its pollers and its evaluator."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        self.names = frozenset(n.name for n in cluster.nodes)
        self.latest: dict[str, NodeSnapshot] = {}
        self.fresh: set[str] = set()
        self.changed = asyncio.Condition()


class MonitorService:
    """Background polling of all clusters; owns its tasks (start/stop)."""

    def __init__(
        self,
        config: AppConfig,
        probe: MonitorProbe,
        alerts: AlertService,
        clock: Clock,
        metrics: Metrics | None = None,
        rebuilding: Callable[[str], Mapping[str, int]] | None = None,
        overrides: SlotOverrides | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        """``rebuilding(cluster)``: replica name -> id of the rebuild job running on it now;
        ``overrides``: slots attached or detached from the chat, applied over the config;
        ``history``: where each poll's lag and slot figures are recorded (for /graph)."""
        self._history = history
        self._overrides = overrides or SlotOverrides()
        # (cluster, replica) -> its last known WAL position (for the slotless rule)
        self._positions: dict[tuple[str, str], str] = {}
        self._config = config
        self._rebuilding = rebuilding
        self._probe = probe
        self._alerts = alerts
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._interval = config.monitor.interval_s
        self._timeout = config.monitor.timeout_s
        self._settle = min(MAX_SETTLE_S, self._interval / 2)
        self._growth = GrowthTracker()
        self._tasks: list[asyncio.Task[None]] = []
        self._rounds: dict[str, int] = {}
        self._round_done = asyncio.Condition()
        self._started_at: float | None = None
        self._last_round_at: dict[str, float] = {}

    @property
    def probe(self) -> MonitorProbe:
        """The probe the pollers use (its counters feed the benchmarks)."""
        return self._probe

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return bool(self._tasks)

    @property
    def clusters(self) -> list[ClusterConfig]:
        """The clusters this monitor watches."""
        if not self._config.monitor.enabled:
            return []
        return [c for c in self._config.clusters if c.monitor.enabled]

    async def start(self) -> None:
        """Load the alert state and start polling."""
        if self._tasks:
            return
        await self._alerts.load()
        self._started_at = self._clock.monotonic()
        self._last_round_at.clear()
        origin = asyncio.get_running_loop().time()
        for cluster in self.clusters:
            watch = _Watch(cluster)
            for node in cluster.nodes:
                self._tasks.append(
                    asyncio.create_task(
                        self._poll_loop(watch, node, origin),
                        name=f"monitor-poll-{cluster.name}-{node.name}",
                    )
                )
            self._tasks.append(
                asyncio.create_task(self._evaluate_loop(watch), name=f"monitor-{cluster.name}")
            )
        log.info("monitor started: %d cluster(s), every %.1f s", len(self.clusters), self._interval)

    async def stop(self) -> None:
        """Cancel the polling tasks and close the connections."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._probe.close()

    def round_ages(self) -> dict[str, float]:
        """Cluster -> seconds since its last evaluated round (since the start before the first);
        empty while the monitor is not running. /healthz checks that these stay small."""
        if not self._tasks or self._started_at is None:
            return {}
        now = self._clock.monotonic()
        return {
            c.name: now - self._last_round_at.get(c.name, self._started_at) for c in self.clusters
        }

    def rounds(self, cluster: str) -> int:
        """How many polls of ``cluster`` were evaluated so far."""
        return self._rounds.get(cluster, 0)

    async def wait_rounds(
        self, count: int, cluster: str | None = None, timeout: float = 30
    ) -> None:
        """Wait until ``count`` more polls of ``cluster`` (default: each cluster) were evaluated."""
        names = [cluster] if cluster is not None else [c.name for c in self.clusters]
        targets = {name: self.rounds(name) + count for name in names}
        async with asyncio.timeout(timeout), self._round_done:
            await self._round_done.wait_for(
                lambda: all(self.rounds(n) >= t for n, t in targets.items())
            )

    # --- polling -------------------------------------------------------------------------

    async def _poll_loop(self, watch: _Watch, node: NodeConfig, origin: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            snapshot = await self._poll(watch.cluster.name, node)
            async with watch.changed:
                watch.latest[node.name] = snapshot
                watch.fresh.add(node.name)
                watch.changed.notify_all()
            now = loop.time()
            next_tick = origin + (math.floor((now - origin) / self._interval) + 1) * self._interval
            await asyncio.sleep(next_tick - now)

    async def _poll(self, cluster: str, node: NodeConfig) -> NodeSnapshot:
        """One poll; a failure becomes a snapshot with the reason, never an exception."""
        at = self._clock.time()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self._timeout + 2):  # the probe has its own, tighter one
                snapshot = await self._probe.poll(cluster, node)
            return dataclasses.replace(snapshot, at=at, duration_s=loop.time() - started)
        except NodeUnavailable as exc:
            reason = exc.reason
        except TimeoutError:
            reason = str(Phrase.of("error.pg.no_answer", timeout_s=self._timeout))
        except Exception as exc:  # a probe bug must not stop the monitor
            log.exception("monitor: polling %s/%s failed unexpectedly", cluster, node.name)
            reason = str(Phrase.of("error.monitor.internal", kind=type(exc).__name__))
        return NodeSnapshot(cluster, node.name, at, loop.time() - started, error=reason)

    async def _evaluate_loop(self, watch: _Watch) -> None:
        while True:
            async with watch.changed:
                await watch.changed.wait_for(lambda: bool(watch.fresh))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settle):
                        await watch.changed.wait_for(lambda: watch.fresh >= watch.names)
                snapshots: dict[str, NodeSnapshot | None] = {
                    name: watch.latest[name] if name in watch.fresh else None
                    for name in watch.names
                }
                watch.fresh.clear()
            try:
                await self._evaluate(watch.cluster, snapshots)
            except Exception:
                log.exception("monitor: evaluating cluster %s failed", watch.cluster.name)
            async with self._round_done:
                self._rounds[watch.cluster.name] = self.rounds(watch.cluster.name) + 1
                self._last_round_at[watch.cluster.name] = self._clock.monotonic()
                self._round_done.notify_all()

    async def _evaluate(
        self, cluster: ClusterConfig, snapshots: dict[str, NodeSnapshot | None]
    ) -> None:
        cluster = self._overrides.apply(cluster)
        primary = snapshots.get(cluster.primary.name)
        positions = self._remember_positions(cluster, snapshots)
        rates: dict[str, float] = {}
        if primary is not None and primary.ok and not primary.in_recovery:
            prefix = f"{cluster.name}/"
            for slot in primary.slots:
                self._growth.add(prefix + slot.name, primary.at, slot.retained_bytes)
                rate = self._growth.rate(prefix + slot.name)
                if rate is not None:
                    rates[slot.name] = rate
            self._growth.forget_except({prefix + s.name for s in primary.slots}, prefix)
        evaluation = evaluate(
            cluster,
            snapshots,
            cluster.monitor.thresholds,
            self._alerts.facts_of(cluster.name),
            rates,
            self._rebuilding(cluster.name) if self._rebuilding is not None else None,
            positions,
        )
        await self._alerts.process(evaluation)
        self._record_metrics(cluster, snapshots)
        if self._history is not None:
            try:
                await self._record_history(cluster, snapshots)
            except Exception:  # a full disk must not stop the alerts
                log.exception("monitor: recording the history of %s failed", cluster.name)

    async def _record_history(
        self, cluster: ClusterConfig, snapshots: dict[str, NodeSnapshot | None]
    ) -> None:
        """One poll of ``cluster`` into the history: each replica as its primary sees it,
        each slot's retained WAL (nothing when the primary did not answer)."""
        assert self._history is not None
        primary = snapshots.get(cluster.primary.name)
        if primary is None or not primary.ok or primary.in_recovery:
            return
        senders = replica_senders(cluster, primary)
        replicas = []
        for replica in cluster.replicas:
            sender = senders.get(replica.name)
            replicas.append(
                ReplicaSample(
                    cluster.name,
                    replica.name,
                    primary.at,
                    sender.replay_lag_bytes if sender else None,
                    replay_lag_seconds(sender) if sender else None,
                    sender is not None and sender.state == "streaming",
                )
            )
        slots = [
            SlotSample(cluster.name, slot.name, primary.at, slot.retained_bytes)
            for slot in primary.slots
        ]
        await self._history.record(replicas, slots)

    def _remember_positions(
        self, cluster: ClusterConfig, snapshots: Mapping[str, NodeSnapshot | None]
    ) -> dict[str, str]:
        """Each replica's WAL position now, or the last one seen (it may be stopped)."""
        primary = snapshots.get(cluster.primary.name)
        senders = replica_senders(cluster, primary) if primary is not None else {}
        positions: dict[str, str] = {}
        for replica in cluster.replicas:
            key = (cluster.name, replica.name)
            now = replica_position(senders.get(replica.name), snapshots.get(replica.name))
            if now is not None:
                self._positions[key] = now
            if key in self._positions:
                positions[replica.name] = self._positions[key]
        return positions

    def _record_metrics(
        self, cluster: ClusterConfig, snapshots: dict[str, NodeSnapshot | None]
    ) -> None:
        m, name = self._metrics, cluster.name
        m.inc("replbot_monitor_rounds_total", cluster=name)
        for node, snapshot in snapshots.items():
            if snapshot is None:
                continue
            m.set("replbot_node_up", 1 if snapshot.ok else 0, cluster=name, node=node)
            m.set("replbot_poll_duration_seconds", snapshot.duration_s, cluster=name, node=node)
            result = "ok" if snapshot.ok else "error"
            m.inc("replbot_polls_total", cluster=name, node=node, result=result)
        primary = snapshots.get(cluster.primary.name)
        if primary is None or not primary.ok:
            return
        senders = replica_senders(cluster, primary)
        for replica in cluster.replicas:
            sender = senders.get(replica.name)
            streaming = sender is not None and sender.state == "streaming"
            m.set("replbot_replica_streaming", int(streaming), cluster=name, node=replica.name)
            lag_bytes = sender.replay_lag_bytes if sender else None
            lag_s = replay_lag_seconds(sender) if sender else None
            for family, value in (
                ("replbot_replica_lag_bytes", lag_bytes),
                ("replbot_replica_lag_seconds", lag_s),
            ):
                if value is None:
                    m.clear(family, cluster=name, node=replica.name)
                else:
                    m.set(family, value, cluster=name, node=replica.name)
        m.clear("replbot_slot_retained_bytes", cluster=name)
        m.clear("replbot_slot_active", cluster=name)
        for slot in primary.slots:
            if slot.retained_bytes is not None:
                m.set(
                    "replbot_slot_retained_bytes", slot.retained_bytes, cluster=name, slot=slot.name
                )
            m.set("replbot_slot_active", int(slot.active), cluster=name, slot=slot.name)
