"""A loopback bed for benchmarks: replication set, bot runtime, PTB against the fake Bot API."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import run_as_server_user, short_tmpdir
from bot.app import Runtime, command_menu, open_runtime
from bot.config import AppConfig, parse_config
from bot.sandbox import LocalReplicationSet, find_pg_binaries
from handlers.telegram import ALLOWED_UPDATES, build_application
from tests.fakebotapi import FakeBotApi
from tests.sshd import LocalSshd, SshEndpoint

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
    setup_s: float = 0.0  # seconds until servers, data and PTB were ready
    scale: int = 0  # pgbench scale of the primary's data (0: none)

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
    node_settings: dict[str, dict[str, str]] | None = None,
) -> AsyncIterator[Bed]:
    """Start servers, the runtime and PTB polling the fake Bot API; tear all down after.

    ``prepare`` runs once the servers are up and returns extra config keys per node;
    ``node_settings``: postgresql.conf settings of single nodes (applied after ``settings``).
    """
    base = short_tmpdir()
    pgset = LocalReplicationSet(
        base / "pg",
        find_pg_binaries(),
        replicas=replicas,
        settings=settings,
        node_settings=node_settings,
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


# WAL sized as on a large database: far smaller than the data (and no wal_keep_size, the
# sandbox's default), so a primary's pg_wal stays small next to its 1 GB of data.
LARGE_DB_SETTINGS = {"max_wal_size": "64MB", "min_wal_size": "32MB"}
# The replica that rebuild and repair work on: pg_rewind needs hint bits WAL-logged (or data
# checksums) and the target's own WAL back to the last common checkpoint.
REPAIR_NODE = "pg2"
REPAIR_NODE_SETTINGS = {"wal_log_hints": "on", "wal_keep_size": "512MB"}


async def settle() -> None:
    """Write dirty pages back before a timed side. The sandbox runs ``fsync = off``, so without
    this a program that syncs the data directory (pg_rewind, pg_basebackup) would pay for the
    writes the servers skipped, more or less of them by chance."""
    await asyncio.to_thread(os.sync)


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pgbench_init(pgset: LocalReplicationSet, scale: int) -> None:
    """Fill the primary with pgbench data of ``scale`` (server-side generation, the fastest)."""
    primary = pgset.primary
    argv = [
        str(pgset.binaries.exe("pgbench")), "-i", "-q", "-I", "dtGvp", "-s", str(scale),
        "-h", str(primary.socket_dir), "-p", str(primary.port), "-U", "postgres", "postgres",
    ]  # fmt: skip
    run_as_server_user(argv)


def ssh_node_keys(pgset: LocalReplicationSet, name: str, endpoint: SshEndpoint) -> str:
    """The config keys that let the bot rebuild (or repair) node ``name`` over ``endpoint``."""
    node = pgset.node(name)
    return (
        f'data_dir = "{node.data_dir}"\nconf_dir = "{node.conf_dir}"\n'
        f'pg_bin_dir = "{pgset.binaries.bindir}"\nlog_file = "{node.log_file}"\n'
        f"start_command = {_toml(shlex.join(pgset.pg_ctl_start_command(name)))}\n"
        f"stop_command = {_toml(shlex.join(pgset.pg_ctl_stop_command(name)))}\n"
        "keep_files = []\n"
        f'ssh = {{ host = "{endpoint.host}", port = {endpoint.port}, '
        f'user = "{endpoint.user}", '
        f'key_file = "{endpoint.key_file}", known_hosts = "{endpoint.known_hosts}" }}\n'
        f'replication = {{ host = "127.0.0.1", port = {pgset.primary.port}, '
        f'user = "{pgset.repl_user}", passfile = "{pgset.passfile}" }}\n'
    )


@asynccontextmanager
async def pgbench_bed(
    scale: int,
    node: str = "pg2",
    replicas: int = 2,
    extra: str = "",
    settings: dict[str, str] | None = None,
    node_settings: dict[str, dict[str, str]] | None = None,
    after_init: Callable[[LocalReplicationSet], None] | None = None,
) -> AsyncIterator[tuple[Bed, SshEndpoint]]:
    """A :func:`bed` whose primary holds pgbench data of ``scale`` (generated once, here) and
    whose replica ``node`` the bot reaches over a loopback sshd (the bed's ssh endpoint)."""
    started = time.monotonic()
    sshd_dir = Path("/tmp") / f"rbb-sshd-{time.monotonic_ns()}"
    sshd = LocalSshd(sshd_dir)
    endpoint = sshd.start()

    def prepare(pgset: LocalReplicationSet, base: Path) -> dict[str, str]:
        pgbench_init(pgset, scale)
        if after_init is not None:
            after_init(pgset)
        return {node: ssh_node_keys(pgset, node, endpoint)}

    try:
        async with bed(
            replicas=replicas,
            extra=extra,
            settings=settings,
            prepare=prepare,
            node_settings=node_settings,
        ) as b:
            b.setup_s, b.scale = time.monotonic() - started, scale
            yield b, endpoint
    finally:
        sshd.stop()
        shutil.rmtree(sshd_dir, ignore_errors=True)  # keys, config and log of the test sshd


def large_bed(scale: int) -> AbstractAsyncContextManager[tuple[Bed, SshEndpoint]]:
    """The bed of the rebuild and repair benchmarks (one of them, or both in turn): a primary
    with pgbench data of ``scale`` and :data:`LARGE_DB_SETTINGS`, replicas pg2 (reached over
    SSH, :data:`REPAIR_NODE_SETTINGS`) and pg3."""
    return pgbench_bed(
        scale,
        REPAIR_NODE,
        replicas=2,
        extra="[rebuild]\nprogress_interval = 1\n",
        settings=dict(LARGE_DB_SETTINGS),
        node_settings={REPAIR_NODE: dict(REPAIR_NODE_SETTINGS)},
    )
