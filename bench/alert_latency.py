"""Benchmark 2: alert latency — replica stopped -> "not streaming" message at the Bot API.

The monitor runs exactly as ``replbot run`` runs it (same ``open_runtime`` and
``Runtime.start_monitor``, a ``TelegramNotifier`` posting to the fake Bot API of the test
suite, PTB polling next to it), against a local primary + one replica, at the default 5 s
interval unless told otherwise. Each trial:

1. waits a random fraction of the poll interval (so the fault lands at a random point of
   the poll cycle), issues ``pg_ctl stop -m fast`` on the replica and times until the
   "replica pg2 is not streaming" alert reaches the fake Bot API (the clock starts when the
   stop is *issued*, so PostgreSQL's own shutdown time is included);
2. waits another random fraction of the interval, starts the replica (``pg_ctl start -w``)
   and times from the moment the server accepts connections until the "RESOLVED" message
   reaches the fake API (the replica's WAL receiver reconnecting is included).

Goal for both: ≤ poll interval + 1 s (met = the maximum over all trials). Next to it, the
figure for a Prometheus + Alertmanager stack with documented defaults — computed, not
measured (see :func:`alertmanager_rows`). And the monitor's round trips per node per poll
from the probe's statement counter over healthy polls.
"""

from __future__ import annotations

import asyncio
import random
import time

from bench.common import Row, median
from bench.harness import Bed, bed
from bot.adapters.monitor_pg import PsycopgMonitorProbe
from bot.adapters.telegram_notifier import TelegramNotifier
from bot.units import parse_duration

REPLICA = "pg2"
FIRING = f"replica {REPLICA} is not streaming"
RESOLVED = f"RESOLVED main/{REPLICA}: replica {REPLICA} is not streaming"

# Documented defaults (Prometheus configuration reference, Alertmanager configuration
# reference) and the 15 s that Prometheus' shipped example prometheus.yml sets.
PROM_SCRAPE_DEFAULT_S = 60.0  # global.scrape_interval, default 1m
PROM_EVAL_DEFAULT_S = 60.0  # global.evaluation_interval, default 1m
PROM_COMMON_S = 15.0  # scrape_interval and evaluation_interval in the example prometheus.yml
AM_GROUP_WAIT_S = 30.0  # route.group_wait, default 30s
AM_GROUP_INTERVAL_S = 300.0  # route.group_interval, default 5m (when resolved is sent)


async def _arrival(b: Bed, needle: str, after: int, timeout: float) -> float:
    """time.monotonic() at which a sendMessage containing ``needle`` reached the fake API."""
    call = await b.api.await_for(
        "sendMessage", lambda c: c.ok and needle in str(c.result["text"]), timeout, after
    )
    return call.at


def _polls(b: Bed) -> float:
    """Polls of every node the monitor evaluated so far (answered + failed)."""
    return sum(
        b.runtime.metrics.value("replbot_polls_total", cluster="main", node=n.name, result=r) or 0
        for n in b.pgset.nodes
        for r in ("ok", "error")
    )


async def run(trials: int = 10, interval: str = "5s") -> list[Row]:
    """Run ``trials`` stop/start cycles of the replica; return the rows of benchmark 2."""
    interval_s = parse_duration(interval)
    wait_s = 4 * interval_s + 30  # generous: a miss shows as a slow trial, not a hang
    fire: list[float] = []
    resolve: list[float] = []
    stop_s: list[float] = []
    async with bed(replicas=1, extra=f'[monitor]\ninterval = "{interval}"\n\n') as b:
        config = b.runtime.config
        assert config.monitor.interval_s == interval_s
        await b.runtime.start_monitor(
            TelegramNotifier(b.api.token, b.api.base_url, config.monitor.send_timeout_s)
        )
        monitor = b.runtime.monitor
        probe = monitor.probe
        assert isinstance(probe, PsycopgMonitorProbe)
        await monitor.wait_rounds(1, timeout=wait_s)  # connections open, first poll done
        trips0, polls0 = probe.round_trips, _polls(b)
        await monitor.wait_rounds(3, timeout=wait_s)  # healthy polls only
        healthy_polls = _polls(b) - polls0
        healthy_trips = probe.round_trips - trips0
        for _ in range(trials):
            await asyncio.sleep(random.uniform(0, interval_s))
            mark = b.api.mark()
            issued = time.monotonic()
            await asyncio.to_thread(b.pgset.stop_node, REPLICA)
            stop_s.append(time.monotonic() - issued)
            fire.append(await _arrival(b, FIRING, mark, wait_s) - issued)
            await asyncio.sleep(random.uniform(0, interval_s))
            mark = b.api.mark()
            await asyncio.to_thread(b.pgset.start_node, REPLICA)
            accepting = time.monotonic()
            resolve.append(await _arrival(b, RESOLVED, mark, wait_s) - accepting)
        total_polls, total_trips, connects = _polls(b), probe.round_trips, probe.connects

    goal = f"≤ {interval_s + 1:g} s (interval + 1 s)"
    rows = []
    for label, values, start in (
        ("not streaming", fire, "`pg_ctl stop` issued"),
        ("resolved", resolve, "`pg_ctl start` returned"),
    ):
        rows += [
            Row(
                "alert latency",
                f"{label}: median",
                median(values),
                "s",
                note=f"from {start} to the message at the fake Bot API; n={len(values)}, "
                f"interval {interval_s:g} s, random phase",
                samples=values,
            ),
            Row("alert latency", f"{label}: min", min(values), "s"),
            Row(
                "alert latency",
                f"{label}: max",
                max(values),
                "s",
                goal=goal,
                met=max(values) <= interval_s + 1,
            ),
        ]
    rows[0].note += f"; `pg_ctl stop -m fast` itself took median {median(stop_s):.2f} s"
    rows += alertmanager_rows()
    per_poll = healthy_trips / healthy_polls if healthy_polls else float("nan")
    rows.append(
        Row(
            "alert latency",
            "round trips per node per poll",
            per_poll,
            "",
            goal="1",
            met=per_poll == 1,
            note=f"probe statement counter over {healthy_polls:.0f} healthy polls; whole run "
            f"incl. failures: {total_trips} statements for {total_polls:.0f} polls "
            f"(a failed connect sends none), {connects} connection attempts",
        )
    )
    return rows


def alertmanager_rows() -> list[Row]:
    """What Prometheus + Alertmanager with default settings would take: computed, not measured.

    Firing: the fault is seen at the next scrape (≤ scrape_interval), the rule fires at the
    next evaluation (≤ evaluation_interval, ``for:`` left at its default 0) and Alertmanager
    waits group_wait before the first notification of a new group. Resolved: the same two
    Prometheus clocks, then the group's next flush (≤ group_interval). Worst case is the sum;
    the mean assumes uniformly random phases (half of each clock, all of group_wait).
    Exporter and delivery time are left out (they only add).
    """
    worst = PROM_SCRAPE_DEFAULT_S + PROM_EVAL_DEFAULT_S + AM_GROUP_WAIT_S
    mean = PROM_SCRAPE_DEFAULT_S / 2 + PROM_EVAL_DEFAULT_S / 2 + AM_GROUP_WAIT_S
    common_worst = 2 * PROM_COMMON_S + AM_GROUP_WAIT_S
    common_mean = PROM_COMMON_S + AM_GROUP_WAIT_S
    resolved_worst = PROM_SCRAPE_DEFAULT_S + PROM_EVAL_DEFAULT_S + AM_GROUP_INTERVAL_S
    resolved_mean = resolved_worst / 2
    return [
        Row(
            "alert latency",
            "Alertmanager defaults, firing (computed, not measured)",
            worst,
            "s",
            note=f"worst case = Prometheus scrape_interval {PROM_SCRAPE_DEFAULT_S:g} s "
            "(default 1m) "
            f"+ evaluation_interval {PROM_EVAL_DEFAULT_S:g} s (default 1m) + Alertmanager "
            f"group_wait {AM_GROUP_WAIT_S:g} s (default); mean {mean:g} s. With the 15 s "
            f"scrape/evaluation of the example prometheus.yml: worst {common_worst:g} s, "
            f"mean {common_mean:g} s. `for:` 0, exporter time not counted",
        ),
        Row(
            "alert latency",
            "Alertmanager defaults, resolved (computed, not measured)",
            resolved_worst,
            "s",
            note=f"worst case = scrape {PROM_SCRAPE_DEFAULT_S:g} s + evaluation "
            f"{PROM_EVAL_DEFAULT_S:g} s + group_interval {AM_GROUP_INTERVAL_S:g} s "
            f"(default 5m: resolved alerts go out at the group's next flush); "
            f"mean {resolved_mean:g} s",
        ),
    ]
