"""Measure alert latency: replica stopped -> "not streaming" message at a (fake) Bot API.

Runs the monitor exactly as ``replbot run`` does (default 5 s interval unless --interval),
with the TelegramNotifier posting to the fake Bot API of the test suite, against a local
PostgreSQL primary + replica. Each trial stops the replica at a random point of the poll
cycle, times the message's arrival at the Bot API, starts the replica and waits for the
"resolved" message. Also reports the monitor's round trips per node per poll.

    python -m scripts.alert_latency [--trials 10] [--interval 5s]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bot.adapters.monitor_pg import PsycopgMonitorProbe
from bot.adapters.telegram_notifier import TelegramNotifier
from bot.app import open_runtime
from bot.config import load_config
from bot.sandbox import LocalReplicationSet, find_pg_binaries
from tests.fakebotapi import FakeBotApi

CHAT = -100
PASSWORD_ENV = "REPLBOT_LATENCY_DB_PASSWORD"  # noqa: S105 (a variable name)


def config_text(pgset: LocalReplicationSet, audit: Path, interval: str) -> str:
    nodes = "".join(
        f'[[clusters.nodes]]\nname = "{n.name}"\nrole = "{n.role}"\n'
        f'dsn = "{pgset.dsn(n.name)}"\npassword_env = "{PASSWORD_ENV}"\n'
        + (f'slot = "{n.slot}"\n' if n.slot else "")
        for n in pgset.nodes
    )
    return (
        f"[telegram]\nalert_chat_ids = [{CHAT}]\n\n"
        f'[monitor]\ninterval = "{interval}"\n\n'
        f'[audit]\npath = "{audit}"\n\n'
        '[[clusters]]\nname = "main"\n' + nodes
    )


async def wait_call(api: FakeBotApi, needle: str, after: int, timeout: float = 60) -> float:
    call = await api.await_for(
        "sendMessage", lambda c: c.ok and needle in str(c.result["text"]), timeout, after
    )
    return call.at


async def measure(pgset: LocalReplicationSet, base: Path, trials: int, interval: str) -> None:
    api = FakeBotApi()
    api.start()
    os.environ[PASSWORD_ENV] = pgset.bot_password
    path = base / "replbot.toml"
    path.write_text(config_text(pgset, base / "audit.sqlite3", interval))
    config = load_config(path)
    runtime = await open_runtime(config)
    await runtime.start_monitor(
        TelegramNotifier(api.token, api.base_url, config.monitor.send_timeout_s)
    )
    latencies: list[float] = []
    try:
        await runtime.monitor.wait_rounds(2)
        for trial in range(trials):
            await asyncio.sleep(random.uniform(0, config.monitor.interval_s))  # random phase
            mark = api.mark()
            await asyncio.to_thread(pgset.stop_node, "pg2")
            stopped = time.monotonic()
            arrived = await wait_call(api, "replica pg2 is not streaming", mark)
            latencies.append(arrived - stopped)
            print(f"trial {trial + 1}: {arrived - stopped:.2f} s")
            mark = api.mark()
            await asyncio.to_thread(pgset.start_node, "pg2")
            await wait_call(api, "RESOLVED main/pg2: replica pg2 is not streaming", mark)
        probe = runtime.monitor.probe
        polls = {
            result: sum(
                runtime.metrics.value(
                    "replbot_polls_total", cluster="main", node=n.name, result=result
                )
                or 0
                for n in pgset.nodes
            )
            for result in ("ok", "error")
        }
        if isinstance(probe, PsycopgMonitorProbe):
            print(
                f"{polls['ok']:.0f} answered and {polls['error']:.0f} failed polls used "
                f"{probe.round_trips} statements: one per answered poll, the rest sent on a "
                f"connection that had just died; {probe.connects} connection attempts"
            )
    finally:
        await runtime.close()
        api.stop()
    print(
        f"interval {config.monitor.interval_s:g} s, {len(latencies)} trials: "
        f"min {min(latencies):.2f} s, median {statistics.median(latencies):.2f} s, "
        f"max {max(latencies):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--interval", default="5s")
    args = parser.parse_args()
    binaries = find_pg_binaries()
    base = Path(tempfile.mkdtemp(prefix="rblat-", dir="/tmp"))
    base.chmod(0o711)
    pgset = LocalReplicationSet(base / "pg", binaries, replicas=1)
    try:
        pgset.start()
        print(f"PostgreSQL {binaries.major}, primary + 1 replica")
        asyncio.run(measure(pgset, base, args.trials, args.interval))
    finally:
        pgset.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
