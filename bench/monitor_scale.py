"""Benchmark 4: one ``replbot run`` process monitoring 100 clusters × 3 nodes.

Method
------
* One local primary + 2 replicas, started with ``max_connections = 400`` (the sandbox
  writes the setting to every node, so the replicas have the primary's value, which a hot
  standby requires). The config defines ``clusters`` clusters whose three nodes all point at
  these servers, so each server carries ``clusters`` monitor connections.
* The bot runs as ``python -m bot run --config …`` (a subprocess, so CPU and RSS are the
  bot's alone) against the fake Bot API, with the monitor on at the default 5 s interval
  and the opt-in ``[metrics]`` endpoint on loopback (read twice: at the window's ends).
* **CPU** = (utime + stime of the process, all threads, from ``/proc/PID/stat``) over the
  wall time of the window, in % of one core. **RSS**: ``VmRSS`` sampled every second in the
  window, and ``VmHWM`` (the peak since start, including the 300 connects) at the end.
* **Queries per node per poll** come from the server side. The servers run with
  ``log_statement = 'all'`` and ``%a`` (application_name) in ``log_line_prefix``; the
  statements each server logged for ``application_name = replbot-monitor`` inside the
  window (one line per executed statement: psycopg sends each ``execute`` as one
  Parse/Bind/Execute/Sync exchange, i.e. one round trip) are divided by the polls of that
  server's node summed over all clusters, as the bot's own ``replbot_polls_total`` counts
  them. Filtering by application_name leaves out everything else (autovacuum, the bench's
  own queries), so no baseline window has to be subtracted. The window starts and ends in
  the quiet gap after a poll burst (the primary's log stopped growing), so both sides count
  the same polls. Why not ``pg_stat_database.xact_commit``: from PostgreSQL 15 a backend
  whose transactions touch no table keeps its transaction counts pending (pgstat flushes
  only when it has relation stats to flush), and the monitor's statement reads only
  functions and views over them, so the counter hardly moves. ``pg_stat_statements`` would
  need the extension, which not every PostgreSQL build (e.g. the embedded wheel) ships.

Goals: ≤ 10 % of one core, ≤ 200 MB RSS, 1 round trip per node per poll.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.common import Row, cpu_seconds, rss_kb, short_tmpdir
from bench.harness import PASSWORD_ENV, bench_config
from bot.sandbox import LocalReplicationSet, find_pg_binaries
from bot.units import parse_duration
from tests.fakebotapi import FakeBotApi

APP_NAME = "replbot-monitor"  # PsycopgMonitorProbe's default application_name
SERVER_SETTINGS = {
    "max_connections": "400",  # 100 clusters -> 100 monitor connections per server
    "log_statement": "all",
    "log_line_prefix": "%m [%p] app=%a ",
}
# One line per statement the monitor executed (simple protocol: "statement:", extended: "execute").
_STATEMENT_RE = re.compile(
    rb"^\S+ \S+ \S+ \[\d+\] app=" + APP_NAME.encode() + rb" LOG:  (?:statement|execute)",
    re.MULTILINE,
)
_CONNS_SQL = "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = %s"
_POLLS_RE = re.compile(r"^replbot_polls_total\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL_RE = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Point:
    """Counters read at one end of a window."""

    at: float
    log_sizes: dict[str, int]  # server (node name) -> size of its server log
    polls: dict[str, float]  # node name -> polls summed over every cluster (ok + error)
    errors: float  # failed polls, all nodes
    cpu: float  # CPU seconds of the bot process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Servers:
    """The servers' side: their logs, and a connection to ``template1`` per server."""

    def __init__(self, pgset: LocalReplicationSet) -> None:
        self._pgset = pgset
        self.conns: dict[str, psycopg.AsyncConnection[Any]] = {}

    async def open(self) -> None:
        for node in self._pgset.nodes:
            self.conns[node.name] = await psycopg.AsyncConnection.connect(
                self._pgset.dsn(node.name),
                dbname="template1",
                password=self._pgset.bot_password,
                autocommit=True,
                application_name="replbot-bench",
            )

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()

    async def monitor_connections(self) -> dict[str, int]:
        """Monitor connections each server holds (pg_stat_activity)."""
        counts = {}
        for name, conn in self.conns.items():
            row = await (await conn.execute(_CONNS_SQL, (APP_NAME,))).fetchone()
            counts[name] = int(row[0]) if row else 0
        return counts

    def log_sizes(self) -> dict[str, int]:
        return {n.name: n.log_file.stat().st_size for n in self._pgset.nodes}

    def statements(self, name: str, start: int, end: int) -> int:
        """Monitor statements server ``name`` logged between two offsets of its log."""
        with self._pgset.node(name).log_file.open("rb") as f:
            f.seek(start)
            chunk = f.read(end - start)
        return len(_STATEMENT_RE.findall(chunk))

    async def wait_quiet(self, interval_s: float, timeout: float) -> None:
        """Return in the gap after a poll burst: the primary's log grew, then stood still.

        Bounded by ``timeout``; on a timeout it returns anyway (the window is then off by at
        most one burst, which the per-poll figure shows).
        """
        log = self._pgset.primary.log_file
        quiet = min(0.5, interval_s / 4)
        deadline = time.monotonic() + timeout
        last = log.stat().st_size
        grew = False
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            size = log.stat().st_size
            if size != last:
                grew, last, still_since = True, size, time.monotonic()
            elif grew and time.monotonic() - still_since >= quiet:
                return


def _scrape(port: int) -> tuple[dict[str, float], float]:
    """Polls per node name (summed over clusters) and failed polls, from the bot's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    polls: dict[str, float] = defaultdict(float)
    errors = 0.0
    for labels, value in _POLLS_RE.findall(text):
        found = dict(_LABEL_RE.findall(labels))
        polls[found["node"]] += float(value)
        if found.get("result") == "error":
            errors += float(value)
    return dict(polls), errors


async def _point(servers: Servers, port: int, pid: int) -> Point:
    cpu = cpu_seconds(pid)
    at = time.monotonic()
    sizes = servers.log_sizes()
    polls, errors = await asyncio.to_thread(_scrape, port)
    return Point(at, sizes, polls, errors, cpu)


async def _wait_connected(
    servers: Servers, proc: subprocess.Popen[bytes], clusters: int, timeout: float
) -> None:
    """Wait until every server holds ``clusters`` monitor connections."""
    started = time.monotonic()
    counts: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the bot exited with {proc.returncode}")
        counts = await servers.monitor_connections()
        if all(c >= clusters for c in counts.values()):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"monitor connections after {timeout:.0f} s: {counts}")


async def run(
    duration_s: float = 180.0,
    clusters: int = 100,
    interval: str = "5s",
) -> list[Row]:
    """Measure one bot process monitoring ``clusters`` × 3 nodes for ``duration_s``."""
    interval_s = parse_duration(interval)
    base = short_tmpdir()
    pgset = LocalReplicationSet(
        base / "pg", find_pg_binaries(), replicas=2, settings=SERVER_SETTINGS
    )
    api = FakeBotApi()
    servers = Servers(pgset)
    proc: subprocess.Popen[bytes] | None = None
    log_path = base / "bot.log"
    pgset.start()
    api.start()
    try:
        port = _free_port()
        extra = f'[monitor]\ninterval = "{interval}"\n\n[metrics]\nlisten = "127.0.0.1:{port}"\n\n'
        names = [f"c{i:03d}" for i in range(1, clusters + 1)]
        bench_config(pgset, base, api, extra, clusters=names)
        await servers.open()

        env = {**os.environ, PASSWORD_ENV: pgset.bot_password}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run", "--config", str(base / "config.toml")],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        launched = time.monotonic()
        await api.await_polling(timeout=60)
        await _wait_connected(servers, proc, clusters, timeout=120)
        connected_after = time.monotonic() - launched
        bound = 3 * interval_s + 10
        await servers.wait_quiet(interval_s, bound)  # the first full round is done …
        await servers.wait_quiet(interval_s, bound)  # … and one steady round after it
        start = await _point(servers, port, proc.pid)
        rss_samples = []
        while time.monotonic() - start.at < duration_s:
            rss_samples.append(rss_kb(proc.pid))
            await asyncio.sleep(min(1.0, duration_s / 5))
        await servers.wait_quiet(interval_s, bound)
        end = await _point(servers, port, proc.pid)
        statements = {
            name: servers.statements(name, start.log_sizes[name], end.log_sizes[name])
            for name in start.log_sizes
        }
        hwm_mb = _vm_hwm_kb(proc.pid) / 1024
        conns = await servers.monitor_connections()
    except BaseException:
        if log_path.exists():
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await servers.close()
        api.stop()
        pgset.destroy()
        shutil.rmtree(base, ignore_errors=True)

    window = end.at - start.at
    cpu = (end.cpu - start.cpu) / window * 100
    rss_mb = max(rss_samples) / 1024
    per_server: dict[str, float] = {}
    queries = polls = 0.0
    for name, q in statements.items():
        p = end.polls.get(name, 0) - start.polls.get(name, 0)
        per_server[name] = q / p if p else float("nan")
        queries, polls = queries + q, polls + p
    per_poll = queries / polls if polls else float("nan")
    ticks = polls / (3 * clusters)
    where = f"{clusters} clusters × 3 nodes, interval {interval_s:g} s, {window:.0f} s window"
    return [
        Row(
            "monitor scale",
            "CPU",
            cpu,
            "% of one core",
            goal="≤ 10 %",
            met=cpu <= 10,
            note=f"{where}; /proc/PID/stat utime+stime of the `replbot run` process",
        ),
        Row(
            "monitor scale",
            "RSS (max in window)",
            rss_mb,
            "MB",
            goal="≤ 200 MB",
            met=rss_mb <= 200,
            note=f"VmRSS every 1 s; peak since start (VmHWM) {hwm_mb:.0f} MB; all "
            f"{3 * clusters} connections open {connected_after:.1f} s after launch",
        ),
        Row(
            "monitor scale",
            "peak RSS since start (VmHWM)",
            hwm_mb,
            "MB",
            goal="≤ 200 MB",
            met=hwm_mb <= 200,
        ),
        Row(
            "monitor scale",
            "queries per node per poll",
            per_poll,
            "",
            goal="1",
            met=abs(per_poll - 1) < 0.01,
            note="server side: statements logged (log_statement=all) for application_name "
            f"{APP_NAME} / the bot's polls of that server's node "
            f"({polls:.0f} polls, {ticks:.1f} per node, {end.errors - start.errors:.0f} "
            "failed); per server "
            + ", ".join(f"{n} {v:.3f}" for n, v in per_server.items())
            + "; monitor connections per server "
            + ", ".join(f"{n} {c}" for n, c in conns.items()),
        ),
    ]
