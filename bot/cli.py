"""``replbot`` command line: run | demo | check-config | audit verify."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import (
    AUDIT_KEY_ENV,
    AppConfig,
    AuditConfig,
    Secret,
    audit_key_text,
    load_config,
    read_audit_key_file,
)
from bot.errors import ConfigError, ReplbotError
from bot.models import AuditHead

log = logging.getLogger("replbot")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``replbot`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc.user_message}", file=sys.stderr)
        return 1
    except ReplbotError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 1
    except _sandbox_error() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _sandbox_error() -> type[Exception]:
    from bot.sandbox import SandboxError

    return SandboxError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replbot", description="Chat-ops for PostgreSQL streaming replication."
    )
    sub = parser.add_subparsers(required=True, dest="command")

    run = sub.add_parser("run", help="run the Telegram bot")
    run.add_argument("--config", required=True, type=Path)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate a config and print it, secrets masked")
    check.add_argument("--config", required=True, type=Path)
    check.set_defaults(func=_cmd_check_config)

    demo = sub.add_parser("demo", help="local primary + replica and a console chat (no token)")
    demo.add_argument(
        "--exec",
        dest="commands",
        action="append",
        default=[],
        metavar="CMD",
        help="run this command (repeatable) and exit instead of the console",
    )
    demo.add_argument("--replicas", type=int, default=1, choices=range(1, 4))
    demo.add_argument("--keep", action="store_true", help="keep the data directories")
    demo.set_defaults(func=_cmd_demo)

    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(required=True, dest="audit_command")
    verify = audit_sub.add_parser("verify", help="check the audit hash chain")
    where = verify.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", type=Path)
    where.add_argument("--db", type=Path, help="path of the audit SQLite file")
    verify.add_argument(
        "--key-file",
        type=Path,
        help="the audit key file (with --db; default: $REPLBOT_AUDIT_KEY, else DB.key)",
    )
    verify.add_argument(
        "--expect-head",
        type=_audit_head,
        metavar="ROWS:HASH",
        help="an anchor from the bot's log ('audit head: rows=N hash=H'); fails if the log "
        "has fewer rows or row ROWS has another hash",
    )
    verify.set_defaults(func=_cmd_audit_verify)
    return parser


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(describe_config(config))
    return 0


def describe_config(config: AppConfig) -> str:
    """A human summary of the resolved config; secrets are shown only as set/unset."""
    token = "set" if config.telegram.token else "NOT SET (replbot run needs it)"
    lines = [
        "config ok",
        f"telegram: token {token}; base_url {config.telegram.base_url}; "
        f"alert chats {list(config.telegram.alert_chat_ids)}",
        f"audit: {config.audit.path}; key from {config.audit.key_source}; "
        f"head logged every {config.audit.anchor_every} rows",
        "users: " + ", ".join(f"{u.name} ({u.id}, {u.role.label})" for u in config.users),
    ]
    for cluster in config.clusters:
        lines.append(f"cluster {cluster.name}:")
        for node in cluster.nodes:
            secret_source = "password from env" if node.password else "password from passfile/none"
            slot = f", slot {node.slot}" if node.slot else ""
            lines.append(f"  {node.name} {node.role.value}: {node.dsn} ({secret_source}{slot})")
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo  # imports the sandbox only when needed

    logging.basicConfig(level=logging.WARNING)
    return run_demo(args.commands, replicas=args.replicas, keep=args.keep)


def _audit_head(text: str) -> AuditHead:
    rows, _, digest = text.partition(":")
    digest = digest.strip().lower()
    if not rows.strip().isdigit() or len(digest) != 64 or not _is_hex(digest):
        raise argparse.ArgumentTypeError("must be ROWS:HASH, e.g. 100:3f5a… (64 hex digits)")
    return AuditHead(int(rows), digest)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 intact, 2 tampered (or not matching --expect-head), 1 on usage errors."""
    from bot.adapters.audit_sqlite import SqliteAuditLog, default_key_path
    from handlers.render import audit_verification

    if args.config:
        audit = load_config(args.config).audit
    else:
        env_key = os.environ.get(AUDIT_KEY_ENV)
        if env_key:
            key: Secret | None = audit_key_text(env_key, AUDIT_KEY_ENV)
        elif args.key_file is not None:
            key = read_audit_key_file(args.key_file, "--key-file")
        else:
            key = None
        audit = AuditConfig(path=args.db, key=key, key_file=args.key_file)
    path = Path(audit.path)
    if not path.exists():
        print(f"error: no audit log at {path}", file=sys.stderr)
        return 1
    key = audit.key
    if key is None and default_key_path(path).exists():
        key = read_audit_key_file(default_key_path(path), str(default_key_path(path)))
    if key is None:
        print(
            f"note: no audit key ({AUDIT_KEY_ENV}, audit.key_file or {default_key_path(path)}); "
            "only rows from before the key can be verified",
            file=sys.stderr,
        )

    async def verify() -> bool:
        log_ = SqliteAuditLog(path, key)
        await log_.open()
        try:
            result = await log_.verify(expect_head=args.expect_head)
        finally:
            await log_.close()
        print(audit_verification(result))
        return result.ok

    return 0 if asyncio.run(verify()) else 2


def _cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.telegram.token is None:
        raise ConfigError("telegram.token", "missing (or set REPLBOT_TELEGRAM_TOKEN)")
    return asyncio.run(run_bot(config))


async def run_bot(config: AppConfig, stop: asyncio.Event | None = None) -> int:
    """Run the Telegram bot until SIGINT/SIGTERM (or ``stop`` is set)."""
    from bot.adapters.telegram_notifier import TelegramNotifier
    from bot.app import command_menu, open_runtime, redactor_for
    from bot.logsetup import configure_logging
    from handlers.telegram import ALLOWED_UPDATES, announce_unfinished_rebuilds, build_application

    redactor = redactor_for(config)
    configure_logging(redactor)
    assert config.telegram.token is not None
    runtime = await open_runtime(config, redactor)
    stop_event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
    app = build_application(
        runtime.dispatcher,
        config.telegram.token.reveal(),
        config.telegram.base_url,
        command_menu(),
    )
    try:
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(allowed_updates=ALLOWED_UPDATES, timeout=10)
            await announce_unfinished_rebuilds(runtime.services, app)
            notifier = TelegramNotifier(
                config.telegram.token.reveal(),
                config.telegram.base_url,
                config.monitor.send_timeout_s,
            )
            await runtime.start_monitor(notifier)
            log.info(
                "replbot running: %d cluster(s), %d user(s)",
                len(config.clusters),
                len(config.users),
            )
            await stop_event.wait()
            log.info("stopping")
            await runtime.stop_monitor()
            await app.updater.stop()
            await app.stop()
    finally:
        await runtime.close()
    return 0
