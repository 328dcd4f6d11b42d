"""Benchmark 3: /status end to end through PTB vs the same queries on bare psycopg.

Goal: p50 and p99 of /status ≤ 2× the bare queries; p99 while a rebuild runs ≤ 2× idle p99
(the rebuild part needs the SSH bed and lives in bench/rebuild.py).
"""

from __future__ import annotations

import asyncio
import time

import psycopg

from bench.common import Row, median, percentile, spread
from bench.harness import Bed, bed
from bot.adapters.monitor_pg import poll_sql

GAP_S = 0.05


async def bare_status_seconds(b: Bed, runs: int) -> list[float]:
    """The /status probe (one statement per node) on pre-opened psycopg connections, in turn."""
    conns = []
    for node in b.pgset.nodes:
        conns.append(
            await psycopg.AsyncConnection.connect(
                b.pgset.dsn(node.name), password=b.pgset.bot_password, autocommit=True
            )
        )
    try:
        samples = []
        for _ in range(runs):
            started = time.monotonic()
            for conn in conns:
                await (await conn.execute(poll_sql(conn.info.server_version))).fetchone()
            samples.append(time.monotonic() - started)
        return samples
    finally:
        for conn in conns:
            await conn.close()


async def run(runs: int = 200) -> list[Row]:
    """Measure both sides in the same bed, alternating."""
    async with bed(replicas=2) as b:
        for _ in range(5):  # warm up both paths
            await b.command("/status")
        bot: list[float] = []
        floor: list[float] = []
        for _ in range(runs):
            # Real users do not send 30 commands a second: keep under PTB's AIORateLimiter
            # (30 messages/s overall), which would otherwise dominate the numbers.
            await asyncio.sleep(GAP_S)
            seconds, text = await b.command("/status")
            assert "replicas streaming" in text, text
            bot.append(seconds)
            await asyncio.sleep(GAP_S)
            seconds, _ = await b.command("/whoami")
            floor.append(seconds)
        bare = await bare_status_seconds(b, runs)
    ratio50 = median(bot) / median(bare)
    ratio99 = percentile(bot, 99) / percentile(bare, 99)
    return [
        Row(
            "command latency",
            "/status p50 via PTB",
            median(bot) * 1000,
            "ms",
            note=f"spread {spread([s * 1000 for s in bot])} ms, n={runs}",
        ),
        Row("command latency", "/status p99 via PTB", percentile(bot, 99) * 1000, "ms"),
        Row(
            "command latency",
            "/whoami p50 via PTB (no SQL)",
            median(floor) * 1000,
            "ms",
            note="the transport and audit floor",
        ),
        Row(
            "command latency",
            "bare psycopg p50",
            median(bare) * 1000,
            "ms",
            note="same queries, persistent connections, sequential",
        ),
        Row("command latency", "bare psycopg p99", percentile(bare, 99) * 1000, "ms"),
        Row("command latency", "ratio p50", ratio50, "×", goal="≤ 2×", met=ratio50 <= 2),
        Row("command latency", "ratio p99", ratio99, "×", goal="≤ 2×", met=ratio99 <= 2),
    ]
