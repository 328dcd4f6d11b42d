"""The benchmarks' smoke mode runs in CI so they never rot (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_runs_every_benchmark_and_writes_results() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((ROOT / "bench" / "results" / "smoke.json").read_text())
    benchmarks = {row["benchmark"] for row in results["rows"]}
    assert {
        "command latency",
        "rebuild",
        "repair",
        "alert latency",
        "monitor scale",
        "idle footprint",
    } <= (benchmarks), benchmarks
    assert all(isinstance(row["value"], int | float) for row in results["rows"])
