"""Errors as a user reads them: services raise a Phrase, the rendering layer words it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import handlers.render  # noqa: F401  (registers every feature's phrase table)
from bot.errors import ReplbotError
from bot.phrases import Phrase, Value
from handlers.i18n import language
from handlers.render.phrases import say


def english(exc: ReplbotError) -> str:
    """The error's text in an English reply."""
    with language("en"):
        return say(exc.phrase)


@contextmanager
def raises_worded(kind: type[ReplbotError], pattern: str) -> Iterator[None]:
    """Like ``pytest.raises(kind, match=pattern)``, matched against the English wording."""
    try:
        yield
    except kind as exc:
        assert re.search(pattern, english(exc)), english(exc)
    else:
        raise AssertionError(f"{kind.__name__} not raised")


def english_value(value: Value | None) -> str:
    """A phrase value (a Phrase of ours or a server's text) as an English reply shows it."""
    if isinstance(value, Phrase):
        with language("en"):
            return say(value)
    return "" if value is None else str(value)
