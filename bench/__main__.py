"""python -m bench [all|smoke|NAME ...]: run benchmarks, write bench/results/*.md and *.json.

Names: command, rebuild, repair, alerts, scale, footprint (``all``: every one, in that order).
``smoke`` runs every benchmark tiny (seconds, for CI: it checks they run, not their numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from bench import alert_latency, command_latency, footprint, monitor_scale, rebuild, repair
from bench.common import Row, write_results
from bench.harness import Bed, large_bed
from tests.sshd import SshEndpoint

NAMES = ["command", "rebuild", "repair", "alerts", "scale", "footprint"]


async def _run(names: list[str], smoke: bool) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    scale = 1 if smoke else 75
    # rebuild and repair run on one bed (its pgbench data generated once) when both run;
    # it opens inside the first one's time and closes after repair, before the others.
    both = {"rebuild", "repair"} <= set(names)
    shared_bed = contextlib.AsyncExitStack()
    shared: tuple[Bed, SshEndpoint] | None = None
    try:
        for name in names:
            started = time.monotonic()
            if both and shared is None and name in {"rebuild", "repair"}:
                shared = await shared_bed.enter_async_context(large_bed(scale))
            rows += await _one(name, smoke, scale, shared)
            if name == "repair":
                await shared_bed.aclose()
            seconds[name] = round(time.monotonic() - started, 1)
            print(f"bench: {name} done in {seconds[name]:.0f} s", file=sys.stderr, flush=True)
    finally:
        await shared_bed.aclose()
    return rows, seconds


async def _one(
    name: str, smoke: bool, scale: int, shared: tuple[Bed, SshEndpoint] | None
) -> list[Row]:
    """The rows of one benchmark."""
    rows: list[Row] = []
    if name == "command":
        rows += await command_latency.run(runs=5 if smoke else 200)
    elif name == "rebuild":
        rows += await rebuild.run(scale=scale, rounds=1 if smoke else 5, shared=shared)
    elif name == "repair":
        rows += await repair.run(scale=scale, rounds=1 if smoke else 3, shared=shared)
    elif name == "alerts":
        rows += await alert_latency.run(trials=1 if smoke else 10, interval="1s" if smoke else "5s")
    elif name == "scale":
        if smoke:
            rows += await monitor_scale.run(duration_s=3, clusters=20, interval="1s")
        else:
            rows += await monitor_scale.run(duration_s=180, clusters=100, interval="5s")
    elif name == "footprint":
        rows += await footprint.run(idle_s=3 if smoke else 30)
    return rows


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "what",
        nargs="*",
        default=["all"],
        help=f"all, smoke, or benchmark names: {', '.join(NAMES)}",
    )
    args = parser.parse_args()
    unknown = [w for w in args.what if w not in {"all", "smoke", *NAMES}]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    smoke = "smoke" in args.what
    names = NAMES if smoke or "all" in args.what else [n for n in NAMES if n in args.what]
    started = time.monotonic()
    rows, seconds = asyncio.run(_run(names, smoke))
    total = round(time.monotonic() - started, 1)
    took = f"Took {total:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + "."
    path = write_results(
        rows,
        "smoke" if smoke else "latest",
        {"seconds": seconds, "total_seconds": total},
        footer=took,
    )
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
