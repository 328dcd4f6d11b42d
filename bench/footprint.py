"""Benchmark 5: RSS and CPU of an idle `replbot run` with a test config. Goal: ≤ 80 MB RSS.

Then one /graph: the plotting library must not be loaded while idle (it is imported with the
first chart), and the RSS after drawing one chart is reported beside the idle figure."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Row, cpu_seconds, rss_kb, short_tmpdir
from bench.harness import ADMIN_ID, PASSWORD_ENV, bench_config
from bot.sandbox import LocalReplicationSet, find_pg_binaries
from tests.fakebotapi import FakeBotApi


async def run(idle_s: float = 30.0) -> list[Row]:
    """Start the bot as a subprocess, let it settle, then sample it while idle."""
    base = short_tmpdir()
    pgset = LocalReplicationSet(base / "pg", find_pg_binaries(), replicas=2)
    api = FakeBotApi()
    pgset.start()
    api.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        bench_config(pgset, base, api)
        env = {**os.environ, PASSWORD_ENV: pgset.bot_password}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--config", str(base / "config.toml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await api.await_polling(timeout=30)
        await asyncio.sleep(min(5.0, idle_s))  # settle: imports done, first polls made
        cpu_before, t_before = cpu_seconds(proc.pid), time.monotonic()
        samples = []
        deadline = time.monotonic() + idle_s
        while time.monotonic() < deadline:
            samples.append(rss_kb(proc.pid))
            await asyncio.sleep(1.0)
        cpu = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - t_before) * 100
        rss_mb = max(samples) / 1024
        idle_plotting = _loaded(proc.pid, "matplotlib")
        mark = api.mark()
        api.push_message(ADMIN_ID, "/graph", chat_id=ADMIN_ID)
        started = time.monotonic()
        await api.await_for("sendPhoto", after=mark, timeout=60)
        first_chart_s = time.monotonic() - started
        await asyncio.sleep(1.0)
        graph_rss_mb = rss_kb(proc.pid) / 1024
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        api.stop()
        pgset.destroy()
        shutil.rmtree(base, ignore_errors=True)
    return [
        Row(
            "idle footprint",
            "RSS (max while idle)",
            rss_mb,
            "MB",
            goal="≤ 80 MB",
            met=rss_mb <= 80,
            note=f"sampled every 1 s for {idle_s:.0f} s",
        ),
        Row(
            "idle footprint",
            "CPU while idle",
            cpu,
            "% of one core",
            note="includes the monitor's polls when enabled",
        ),
        Row(
            "idle footprint",
            "matplotlib mapped while idle",
            float(idle_plotting),
            "yes=1",
            goal="0 (imported with the first chart)",
            met=not idle_plotting,
        ),
        Row(
            "idle footprint",
            "RSS after the first /graph",
            graph_rss_mb,
            "MB",
            note=f"first chart (import + draw + send) {first_chart_s:.2f} s",
        ),
    ]


def _loaded(pid: int, package: str) -> bool:
    """Whether a file of ``package`` is mapped into the process (a C extension it loads)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return f"/{package}/" in maps
