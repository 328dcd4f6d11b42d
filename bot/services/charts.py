"""ChartService: the monitor's history of a cluster (or one replica) as a chart and a summary.

The history comes from the HistoryStore, the thresholds from the cluster's monitor settings,
the words from the caller (the rendering layer, in the reply's language). Drawing is CPU work
in a plotting library: it runs in a worker thread (``asyncio.to_thread``) so the event loop —
polls, /status — never waits for it, and the library is imported only when the first chart is
drawn, so a bot that never draws one does not carry it in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

from bot.config import AppConfig, ClusterConfig
from bot.errors import InvalidInput
from bot.models import (
    ChartData,
    ChartLabels,
    ChartLimits,
    ChartRef,
    ChartSummary,
    ReplicaSample,
    SlotSample,
)
from bot.phrases import Phrase
from bot.ports import ChartRenderer, Clock, HistoryStore

WINDOWS: dict[str, float] = {"6h": 6 * 3600.0, "24h": 24 * 3600.0, "7d": 7 * 86400.0}
DEFAULT_WINDOW = "6h"
FULL_SIZE = (1000, 600)
SMALL_SIZE = (800, 480)  # attached to alerts


class ChartService:
    """Charts of the monitor's history (``/graph`` and the charts attached to alerts)."""

    def __init__(
        self, config: AppConfig, history: HistoryStore, renderer: ChartRenderer, clock: Clock
    ) -> None:
        self._config = config
        self._history = history
        self._renderer = renderer
        self._clock = clock

    def target(self, name: str | None, cluster: str | None, window: str) -> ChartRef:
        """``/graph [cluster|node] [window]`` -> which chart; InvalidInput when it is unclear."""
        if window not in WINDOWS:
            raise InvalidInput(
                Phrase.of("error.chart.window", window=window, known=", ".join(WINDOWS))
            )
        window_s = WINDOWS[window]
        clusters = self._config.clusters
        if cluster is not None:
            found = self._cluster(cluster)
            if name is not None and found.node(name) is None:
                raise InvalidInput(
                    Phrase.of("error.node.unknown_in", node=name or "", cluster=cluster)
                )
            return ChartRef(found.name, name, window_s)
        if name is None:
            if len(clusters) != 1:
                names = ", ".join(c.name for c in clusters)
                raise InvalidInput(Phrase.of("error.cluster.name_one", known=names))
            return ChartRef(clusters[0].name, None, window_s)
        if any(c.name == name for c in clusters):
            return ChartRef(name, None, window_s)
        holders = [c for c in clusters if c.node(name) is not None]
        if not holders:
            raise InvalidInput(Phrase.of("error.chart.no_such", name=name))
        if len(holders) > 1:
            names = ", ".join(c.name for c in holders)
            raise InvalidInput(Phrase.of("error.node.ambiguous_in", node=name, clusters=names))
        return ChartRef(holders[0].name, name, window_s)

    async def draw(
        self, ref: ChartRef, labels: ChartLabels, small: bool = False
    ) -> tuple[bytes, ChartSummary]:
        """The chart of ``ref`` as PNG bytes, and the figures its caption tells."""
        data = await self.data(ref, labels, small)
        png = await asyncio.to_thread(self._renderer.render_png, data)
        return png, summarize(data)

    async def data(self, ref: ChartRef, labels: ChartLabels, small: bool = False) -> ChartData:
        """What the chart of ``ref`` shows (the history read, filtered and grouped)."""
        cluster = self._cluster(ref.cluster)
        end = self._clock.time()
        start = end - ref.window_s
        history = await self._history.history(cluster.name, start)
        replicas = [r for r in history.replicas if ref.node is None or r.replica == ref.node]
        slot_names = _slots_of(cluster, ref.node)
        slots = [s for s in history.slots if slot_names is None or s.slot in slot_names]
        t = cluster.monitor.thresholds
        width, height = SMALL_SIZE if small else FULL_SIZE
        return ChartData(
            ref=ref,
            start=start,
            end=end,
            replicas=_grouped(replicas, lambda r: r.replica),
            slots=_grouped(slots, lambda s: s.slot),
            limits=ChartLimits(
                t.lag_bytes_warning,
                t.lag_bytes_critical,
                t.lag_time_warning_s,
                t.lag_time_critical_s,
                t.slot_retained_warning,
                t.slot_retained_critical,
            ),
            labels=labels,
            width_px=width,
            height_px=height,
        )

    def _cluster(self, name: str) -> ClusterConfig:
        for cluster in self._config.clusters:
            if cluster.name == name:
                return cluster
        raise InvalidInput(Phrase.of("error.cluster.unknown_bare", cluster=name))


def _slots_of(cluster: ClusterConfig, node: str | None) -> set[str] | None:
    """The slots a chart of ``node`` shows (None: all of the cluster's)."""
    if node is None:
        return None
    found = cluster.node(node)
    return {found.slot} if found is not None and found.slot else set()


_Sample = TypeVar("_Sample", ReplicaSample, SlotSample)


def _grouped(
    samples: Sequence[_Sample], key: Callable[[_Sample], str]
) -> tuple[tuple[str, tuple[_Sample, ...]], ...]:
    groups: dict[str, list[_Sample]] = {}
    for sample in samples:
        groups.setdefault(key(sample), []).append(sample)
    return tuple((name, tuple(items)) for name, items in sorted(groups.items()))


def summarize(data: ChartData) -> ChartSummary:
    """The worst replica's byte lag in the window (peak, when, now) and the outage time."""
    samples = sum(len(s) for _, s in data.replicas) + sum(len(s) for _, s in data.slots)
    best: tuple[int, float, str] | None = None
    for name, series in data.replicas:
        for sample in series:
            if sample.lag_bytes is not None and (best is None or sample.lag_bytes > best[0]):
                best = (sample.lag_bytes, sample.at, name)
    outage = _outage_s(data)
    if best is None:
        return ChartSummary(data.ref, samples, outage_s=outage)
    peak, at, name = best
    last = dict(data.replicas)[name][-1]
    return ChartSummary(
        data.ref,
        samples,
        replica=name,
        peak_bytes=peak,
        peak_at=at,
        now_bytes=last.lag_bytes,
        streaming_now=last.streaming,
        outage_s=outage,
    )


def _outage_s(data: ChartData) -> float:
    """Seconds of the window in which some replica was seen not streaming."""
    spans = data.outages()
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total
