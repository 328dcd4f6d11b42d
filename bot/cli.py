"""``replbot`` command line: run | demo | check-config | audit verify | audit export.

Exit codes (the same for every command)::

    0  ok
    1  runtime error (a database, a server or the network failed)
    2  usage or config error (argparse's code for a typo; a config key that is wrong)
    3  audit verification failed (the log was changed, or does not match --expect-head)

The config file is ``--config``, else ``$REPLBOT_CONFIG``, else ``/etc/replbot/config.toml``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bot.config import (
    AUDIT_KEY_ENV,
    LANGUAGES,
    AppConfig,
    AuditConfig,
    Secret,
    Thresholds,
    audit_key_text,
    load_config,
    read_audit_key_file,
)
from bot.errors import ConfigError, ReplbotError
from bot.models import AuditHead, Role
from bot.phrases import Phrase

log = logging.getLogger("replbot")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUDIT_FAILED = 3
CONFIG_ENV = "REPLBOT_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/replbot/config.toml")


def _english(exc: ReplbotError) -> str:
    """An error for the operator's terminal, worded in English by the rendering layer."""
    from handlers.i18n import language
    from handlers.render import say

    with language("en"):
        return say(exc.phrase)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``replbot`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    except ReplbotError as exc:
        print(f"error: {_english(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except _sandbox_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


def package_version() -> str:
    """The installed replbot version (pyproject's), or "unknown" when run from a bare tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("replbot")
    except PackageNotFoundError:
        return "unknown"


def default_config_path() -> Path:
    """``$REPLBOT_CONFIG`` if set, else ``/etc/replbot/config.toml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def log_level(args: argparse.Namespace, default: int = logging.INFO) -> int:
    """The level ``--log-level`` asked for, else ``default``."""
    name: str | None = getattr(args, "log_level", None)
    return default if name is None else int(getattr(logging, name.upper()))


def _sandbox_errors() -> tuple[type[Exception], ...]:
    """The demo's own failures (PostgreSQL sandbox, loopback sshd): exit 1 with their text."""
    from bot.sandbox import SandboxError
    from bot.sshd import SshdError

    return SandboxError, SshdError


def _logging_options(parser: argparse.ArgumentParser, top_level: bool) -> None:
    """--log-level/--log-format, accepted before the command and after it: the subcommands'
    copies default to SUPPRESS, so a value given before the command is kept."""
    from bot.logsetup import LOG_FORMATS, LOG_LEVELS

    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        default=None if top_level else argparse.SUPPRESS,
        help="debug, info, warning, error, critical (default: info for run, else warning)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text" if top_level else argparse.SUPPRESS,
        help="text, or json: one object per line (time, level, logger, message, exception)",
    )


def _config_option(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    """--config, before the command or after it (the subcommand's copy wins, as for logging)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=default_config_path() if top_level else argparse.SUPPRESS,
        help=f"the TOML config (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replbot",
        description="Chat-ops for PostgreSQL streaming replication.",
        epilog="exit codes: 0 ok, 1 runtime error, 2 usage or config error, "
        "3 audit verification failed",
    )
    parser.add_argument("--version", action="version", version=f"replbot {package_version()}")
    _logging_options(parser, top_level=True)
    _config_option(parser, top_level=True)
    common = argparse.ArgumentParser(add_help=False)
    _logging_options(common, top_level=False)
    sub = parser.add_subparsers(required=True, dest="command")

    run = sub.add_parser("run", help="run the Telegram bot", parents=[common])
    _config_option(run)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser(
        "check-config",
        help="validate a config and print the effective settings, secrets masked",
        parents=[common],
    )
    _config_option(check)
    check.set_defaults(func=_cmd_check_config)

    demo = sub.add_parser(
        "demo", help="local primary + replica and a console chat (no token)", parents=[common]
    )
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
    demo.add_argument(
        "--lang", choices=LANGUAGES, default="en", help="language of the console and replies"
    )
    demo.add_argument(
        "--ssh",
        action="store_true",
        help="also start a loopback sshd (key-only, host key verified); /rebuild goes through it",
    )
    demo.set_defaults(func=_cmd_demo)

    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(required=True, dest="audit_command")
    verify = audit_sub.add_parser(
        "verify",
        help="check the audit hash chain (exit 3 if it was changed)",
        parents=[common],
    )
    where = verify.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"the TOML config (default without --db: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )
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

    export = audit_sub.add_parser(
        "export",
        help="write the audit rows to stdout (JSON lines or CSV) for archiving; "
        "the verification result goes to stderr (exit 3 if the chain does not verify)",
        parents=[common],
    )
    source = export.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"the TOML config (default without --db: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )
    source.add_argument("--db", type=Path, help="path of the audit SQLite file")
    export.add_argument("--key-file", type=Path, help="the audit key file (as for verify)")
    export.add_argument(
        "--since",
        type=_iso_time,
        metavar="ISO",
        help="only rows written at or after this time (ISO 8601; no zone means UTC)",
    )
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument(
        "--expect-head", type=_audit_head, metavar="ROWS:HASH", help="as for verify"
    )
    export.set_defaults(func=_cmd_audit_export)
    return parser


def _cmd_check_config(args: argparse.Namespace) -> int:
    _configure_cli_logging(args)
    config = load_config(args.config)
    print(describe_config(config))
    return EXIT_OK


def _configure_cli_logging(args: argparse.Namespace, default: int = logging.WARNING) -> None:
    from bot.logsetup import configure_logging
    from bot.redact import Redactor

    configure_logging(Redactor(), log_level(args, default), getattr(args, "log_format", "text"))


def _seconds(value: float) -> str:
    return f"{value:g}s"


def describe_thresholds(t: Thresholds) -> str:
    """The alert thresholds in effect, as one line."""
    from handlers.render import human_bytes

    return (
        f"node down after {t.node_down_polls} polls; "
        f"byte lag {human_bytes(t.lag_bytes_warning)}/{human_bytes(t.lag_bytes_critical)} "
        f"for {_seconds(t.lag_for_s)}; "
        f"time lag {_seconds(t.lag_time_warning_s)}/{_seconds(t.lag_time_critical_s)}; "
        f"slot inactive after {_seconds(t.slot_inactive_after_s)}; "
        f"slot retains {human_bytes(t.slot_retained_warning)}/"
        f"{human_bytes(t.slot_retained_critical)} (warning/critical)"
    )


def describe_config(config: AppConfig) -> str:
    """A human summary of the resolved (effective) config; secrets are shown only as ***."""
    token = "***" if config.telegram.token else "NOT SET (replbot run needs it)"
    monitor = config.monitor
    rebuild = config.rebuild
    metrics = config.metrics
    approver = "required" if rebuild.require_second_approver else "not required"
    settings = [
        f"monitor: {'enabled' if monitor.enabled else 'disabled'}; "
        f"interval {_seconds(monitor.interval_s)}; timeout {_seconds(monitor.timeout_s)}; "
        f"repeat every {_seconds(monitor.repeat_interval_s)}; "
        f"send timeout {_seconds(monitor.send_timeout_s)}",
        f"thresholds: {describe_thresholds(monitor.thresholds)}",
        f"rebuild: second approver {approver}; "
        f"verify timeout {_seconds(rebuild.verify_timeout_s)}; "
        f"command timeout {_seconds(rebuild.command_timeout_s)}; "
        f"disk headroom ×{rebuild.disk_headroom:g}",
        "metrics: "
        + (
            f"http://{metrics.host}:{metrics.port}/metrics and /healthz"
            if metrics.host is not None
            else "off (set metrics.listen)"
        ),
        *(
            [f"health: http://{config.health.host}:{config.health.port}/healthz"]
            if config.health.host is not None
            else []
        ),
        f"retention: sent alert messages and resolved alerts kept "
        f"{monitor.retention_days:g} days; the audit log is never pruned",
    ]
    lines = [
        "config ok",
        f"telegram: token {token}; base_url {config.telegram.base_url}; "
        f"alert chats {list(config.telegram.alert_chat_ids)}",
        f"audit: {config.audit.path}; key from {config.audit.key_source}; "
        f"head logged every {config.audit.anchor_every} rows",
        *settings,
        "users: " + ", ".join(f"{u.name} ({u.id}, {u.role.label})" for u in config.users),
    ]
    for cluster in config.clusters:
        lines.append(f"cluster {cluster.name}:")
        if not cluster.monitor.enabled:
            lines.append("  monitor: disabled for this cluster")
        elif cluster.monitor.thresholds != monitor.thresholds:
            lines.append(f"  thresholds: {describe_thresholds(cluster.monitor.thresholds)}")
        for node in cluster.nodes:
            secret_source = "password from env" if node.password else "password from passfile/none"
            slot = f", slot {node.slot}" if node.slot else ""
            lines.append(f"  {node.name} {node.role.value}: {node.dsn} ({secret_source}{slot})")
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo  # imports the sandbox only when needed

    _configure_cli_logging(args)
    return run_demo(
        args.commands, replicas=args.replicas, keep=args.keep, ssh=args.ssh, language=args.lang
    )


def _audit_head(text: str) -> AuditHead:
    rows, _, digest = text.partition(":")
    digest = digest.strip().lower()
    if not rows.strip().isdigit() or len(digest) != 64 or not _is_hex(digest):
        raise argparse.ArgumentTypeError("must be ROWS:HASH, e.g. 100:3f5a… (64 hex digits)")
    return AuditHead(int(rows), digest)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _audit_source(args: argparse.Namespace) -> tuple[Path, Secret | None]:
    """The audit file and its key from --db/--key-file/$REPLBOT_AUDIT_KEY, else the config."""
    from bot.adapters.audit_sqlite import default_key_path

    if args.db is None:
        audit = load_config(args.config or default_config_path()).audit
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
        raise ReplbotError(Phrase.of("error.audit.missing", path=str(path)))
    key = audit.key
    if key is None and default_key_path(path).exists():
        key = read_audit_key_file(default_key_path(path), str(default_key_path(path)))
    if key is None:
        print(
            f"note: no audit key ({AUDIT_KEY_ENV}, audit.key_file or {default_key_path(path)}); "
            "only rows from before the key can be verified",
            file=sys.stderr,
        )
    return path, key


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 intact, 3 tampered (or not matching --expect-head), 1 when there is no log."""
    from bot.adapters.audit_sqlite import SqliteAuditLog
    from handlers.render import audit_verification

    _configure_cli_logging(args)
    path, key = _audit_source(args)

    async def verify() -> bool:
        log_ = SqliteAuditLog(path, key)
        await log_.open()
        try:
            result = await log_.verify(expect_head=args.expect_head)
        finally:
            await log_.close()
        print(audit_verification(result))
        return result.ok

    return EXIT_OK if asyncio.run(verify()) else EXIT_AUDIT_FAILED


def _iso_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time like 2026-01-31 or 2026-01-31T12:00:00+00:00"
        ) from None


def _cmd_audit_export(args: argparse.Namespace) -> int:
    """Rows to stdout (jsonl or csv); the verification result to stderr. Exit 3 when the chain
    does not verify; the rows are written all the same (an archive withholds nothing)."""
    from bot.adapters.audit_sqlite import EXPORT_COLUMNS, SqliteAuditLog
    from handlers.render import audit_verification

    _configure_cli_logging(args)
    path, key = _audit_source(args)
    columns = [c.strip() for c in EXPORT_COLUMNS.split(",")]

    async def export() -> bool:
        log_ = SqliteAuditLog(path, key)
        await log_.open()
        try:
            result = await log_.verify(expect_head=args.expect_head)
            out = sys.stdout
            writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
            if args.format == "csv":
                writer.writeheader()
            async for row in log_.export_rows(args.since):
                if args.format == "csv":
                    writer.writerow(row)
                else:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
        finally:
            await log_.close()
        print(audit_verification(result), file=sys.stderr)
        return result.ok

    return EXIT_OK if asyncio.run(export()) else EXIT_AUDIT_FAILED


def _cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.telegram.token is None:
        raise ConfigError("telegram.token", "missing (or set REPLBOT_TELEGRAM_TOKEN)")
    return asyncio.run(
        run_bot(config, log_level=log_level(args), log_format=getattr(args, "log_format", "text"))
    )


async def run_bot(
    config: AppConfig,
    stop: asyncio.Event | None = None,
    log_level: int = logging.INFO,
    log_format: str = "text",
) -> int:
    """Run the Telegram bot until SIGINT/SIGTERM (or ``stop`` is set)."""
    from bot.adapters.telegram_notifier import TelegramNotifier
    from bot.app import command_menu, open_runtime, redactor_for, user_menus
    from bot.logsetup import configure_logging
    from handlers.telegram import ALLOWED_UPDATES, announce_unfinished_rebuilds, build_application

    redactor = redactor_for(config)
    configure_logging(redactor, log_level, log_format)
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
        command_menu(config.telegram.language, Role.VIEWER),  # groups and anyone else
        on_poll_ok=runtime.note_poll,
        localized_commands={
            lang: command_menu(lang, Role.VIEWER) for lang in LANGUAGES if lang != "en"
        },
        chat_commands=user_menus(config, await runtime.chosen_languages()),
    )
    runtime.watch_polling()
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


if __name__ == "__main__":  # python -m bot.cli works like python -m bot
    raise SystemExit(main())
