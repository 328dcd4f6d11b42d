"""Logging for the bot process: one handler, secrets masked, noisy URL loggers silenced."""

from __future__ import annotations

import logging
import sys

from bot.redact import RedactingFilter, Redactor


def configure_logging(redactor: Redactor, level: int = logging.INFO) -> None:
    """Log to stderr through a filter that masks every known secret.

    httpx logs each request URL at INFO, and Bot API URLs contain the token: keep it at WARNING.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "telegram.ext.ExtBot", "asyncssh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
