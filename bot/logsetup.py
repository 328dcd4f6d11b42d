"""Logging for the bot process: secrets masked in every record, noisy URL loggers silenced.

Redaction is installed as a LogRecord factory, so every handler (ours, pytest's, a library's)
sees the masked text: the message is rendered and scrubbed when the record is created.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

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
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
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


def configure_logging(redactor: Redactor, level: int = logging.INFO) -> None:
    """One stderr handler, redaction installed, noisy loggers quiet."""
    install_redaction(redactor)
    quiet_noisy_loggers()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
