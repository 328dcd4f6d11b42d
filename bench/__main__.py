"""python -m bench [all|smoke|NAME ...]: run benchmarks, write bench/results/*.md and *.json."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench import command_latency, footprint, rebuild
from bench.common import Row, write_results


async def _run(names: list[str], smoke: bool) -> list[Row]:
    rows: list[Row] = []
    if "command" in names:
        rows += await command_latency.run(runs=5 if smoke else 200)
    if "rebuild" in names:
        rows += await rebuild.run(scale=1 if smoke else 14, rounds=1 if smoke else 3)
    if "footprint" in names:
        rows += await footprint.run(idle_s=3 if smoke else 30)
    return rows


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "what", nargs="*", default=["all"], help="all, smoke, or benchmark names: command"
    )
    args = parser.parse_args()
    names = ["command", "rebuild", "footprint"]
    smoke = "smoke" in args.what
    if not smoke and "all" not in args.what:
        names = [n for n in names if n in args.what]
    rows = asyncio.run(_run(names, smoke))
    path = write_results(rows, "smoke" if smoke else "latest")
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
