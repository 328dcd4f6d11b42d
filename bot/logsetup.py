"""Logging for the bot process: secrets masked in every record, noisy URL loggers silenced.

Redaction is installed as a LogRecord factory, so every handler (ours, pytest's, a library's)
sees the masked text: the message is rendered and scrubbed when the record is created.
Two output formats: ``text`` (one line per record, the traceback below it) and ``json`` (one
object per line: time, level, logger, message and, if any, exception), both masked the same.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.redact import Redactor

_REDACTOR = Redactor()
_installed = False
NOISY_LOGGERS = ("httpx", "httpcore", "telegram.ext.ExtBot", "asyncssh", "aiosqlite")


def install_redaction(redactor: Redactor) -> None:
    """Mask ``redactor``'s secrets (and password-like text) in all log records of the process."""
    global _installed
    for secret in redactor.secrets:
        _REDACTOR.add(secret)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not hide the record
            message = str(record.msg)
        record.replbot_message = _REDACTOR(message)
        if record.exc_info:
            exception = _REDACTOR(logging.Formatter().formatException(record.exc_info))
            record.replbot_exception = exception
            message += "\n" + exception
            record.exc_info = None
        record.msg = _REDACTOR(message)
        record.args = None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def quiet_noisy_loggers() -> None:
    """httpx logs request URLs at INFO, and Bot API URLs contain the token."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``
    and ``exception`` when the record carries one. The text is the redacted one."""

    def format(self, record: logging.LogRecord) -> str:
        message = getattr(record, "replbot_message", None)
        exception = getattr(record, "replbot_exception", None)
        if message is None:  # a record made before redaction was installed
            message = _REDACTOR(record.getMessage())
            if record.exc_info:
                exception = _REDACTOR(self.formatException(record.exc_info))
        when = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, str] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    redactor: Redactor,
    level: int = logging.INFO,
    log_format: str = "text",
    stream: TextIO | None = None,
) -> None:
    """One handler on ``stream`` (stderr), redaction installed, noisy loggers quiet."""
    install_redaction(redactor)
    quiet_noisy_loggers()
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
