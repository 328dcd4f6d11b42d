"""A loopback bed for benchmarks: replication set, bot runtime, PTB against the fake Bot API."""

from __future__ import annotations

import os
import shutil
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import short_tmpdir
from bot.app import Runtime, command_menu, open_runtime
from bot.config import AppConfig, parse_config
from bot.sandbox import LocalReplicationSet, find_pg_binaries
from handlers.telegram import ALLOWED_UPDATES, build_application
from tests.fakebotapi import FakeBotApi

ADMIN_ID = 4242
PASSWORD_ENV = "REPLBOT_BENCH_DB_PASSWORD"


def node_tables(
    pgset: LocalReplicationSet, cluster: str = "main", node_extra: dict[str, str] | None = None
) -> str:
    """[[clusters]] TOML for a replication set (``node_extra``: more keys per node name)."""
    text = f'[[clusters]]\nname = "{cluster}"\n\n'
    for node in pgset.nodes:
        text += (
            "[[clusters.nodes]]\n"
            f'name = "{node.name}"\nrole = "{node.role}"\n'
            f'dsn = "{pgset.dsn(node.name)}"\npassword_env = "{PASSWORD_ENV}"\n'
        )
        if node.slot:
            text += f'slot = "{node.slot}"\n'
        text += (node_extra or {}).get(node.name, "") + "\n"
    return text


def bench_config(
    pgset: LocalReplicationSet,
    base: Path,
    api: FakeBotApi,
    extra: str = "",
    node_extra: dict[str, str] | None = None,
    clusters: Sequence[str] = ("main",),
) -> AppConfig:
    """A validated config for the benchmarks (one admin user).

    Every name in ``clusters`` becomes a cluster whose nodes are the servers of ``pgset``.
    """
    text = (
        "[telegram]\n"
        f'token = "{api.token}"\nbase_url = "{api.base_url}"\n'
        f"alert_chat_ids = [{ADMIN_ID}]\n\n"
        f'[audit]\npath = "{base / "audit.sqlite3"}"\n\n'
        f'[[users]]\nid = {ADMIN_ID}\nname = "bench"\nrole = "admin"\n\n'
        + extra
        + "".join(node_tables(pgset, name, node_extra) for name in clusters)
    )
    (base / "config.toml").write_text(text)
    return parse_config(tomllib.loads(text), {PASSWORD_ENV: pgset.bot_password})


@dataclass
class Bed:
    """What a benchmark gets: servers, the bot's runtime and the fake Bot API."""

    pgset: LocalReplicationSet
    runtime: Runtime
    api: FakeBotApi
    base: Path

    async def command(self, text: str, timeout: float = 30) -> tuple[float, str]:
        """Send ``text`` as the admin; (seconds until the first reply reached the API, reply)."""
        mark = self.api.mark()
        started = time.monotonic()
        self.api.push_message(ADMIN_ID, text)
        call = await self.api.await_for("sendMessage", timeout=timeout, after=mark)
        return call.at - started, str(call.params.get("text", ""))


@asynccontextmanager
async def bed(
    replicas: int = 2,
    extra: str = "",
    settings: dict[str, str] | None = None,
    prepare: Callable[[LocalReplicationSet, Path], dict[str, str]] | None = None,
) -> AsyncIterator[Bed]:
    """Start servers, the runtime and PTB polling the fake Bot API; tear all down after.

    ``prepare`` runs once the servers are up and returns extra config keys per node.
    """
    base = short_tmpdir()
    pgset = LocalReplicationSet(
        base / "pg", find_pg_binaries(), replicas=replicas, settings=settings
    )
    api = FakeBotApi()
    pgset.start()
    api.start()
    os.environ[PASSWORD_ENV] = pgset.bot_password
    runtime: Runtime | None = None
    app: Any = None
    try:
        node_extra = prepare(pgset, base) if prepare else None
        config = bench_config(pgset, base, api, extra, node_extra)
        runtime = await open_runtime(config)
        app = build_application(runtime.dispatcher, api.token, api.base_url, command_menu())
        await app.initialize()
        await app.start()
        await app.updater.start_polling(
            poll_interval=0.0, timeout=5, allowed_updates=ALLOWED_UPDATES
        )
        await api.await_polling()
        yield Bed(pgset, runtime, api, base)
    finally:
        if app is not None:
            await app.updater.stop()
            await app.stop()
            await app.shutdown()
        if runtime is not None:
            await runtime.close()
        api.stop()
        pgset.destroy()
        shutil.rmtree(base, ignore_errors=True)
