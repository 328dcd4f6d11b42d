"""Words for the :class:`~bot.phrases.Phrase` values services return.

Each feature's render module registers its table (key -> English msgid, marked with ``N_``
so Babel extracts it) with :func:`register`; :func:`say` looks a phrase up and formats it in
the reply's language. tests/unit/test_phrases.py checks that every key a service uses has a
text and that every placeholder of a text is a value the service gives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.phrases import Phrase, Value
from handlers.i18n import _
from handlers.render.common import human_bytes, human_seconds

TEXTS: dict[str, str] = {}


def register(texts: Mapping[str, str]) -> None:
    """Add a feature's phrase texts; a key may be registered once."""
    clash = sorted(set(texts) & set(TEXTS))
    if clash:
        raise ValueError(f"phrase keys registered twice: {clash}")
    TEXTS.update(texts)


# ``str(phrase)`` of a phrase whose values hold no space: what a str field (a node's
# ``reason``, a snapshot's ``error``, an alert figure) keeps of one of our own phrases
_NEUTRAL = re.compile(r"([a-z_]+(?:\.[a-z_]+)+)((?: [a-z_]+=[^ =]+)*)")


def _number(text: str) -> Value:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def reason_text(value: Value | None) -> str:
    """A reason as text: a phrase worded; a str that is the neutral form of one of our
    phrases (``error.pg.no_answer timeout_s=5.0``) worded too; anything else (what
    PostgreSQL, SSH or Telegram said) as given."""
    if value is None:
        return ""
    if isinstance(value, Phrase):
        return say(value)
    if isinstance(value, str):
        match = _NEUTRAL.fullmatch(value)
        if match and match.group(1) in TEXTS:
            pairs = (item.split("=", 1) for item in match.group(2).split())
            values = tuple(sorted((k, _number(v)) for k, v in pairs))
            return say(Phrase(match.group(1), values))
    return str(value)


def _shown(name: str, value: Value) -> str:
    if isinstance(value, Phrase | str):
        return reason_text(value)
    if name.endswith("_bytes") and isinstance(value, int | float):
        return human_bytes(int(value))
    if name.endswith("_s") and isinstance(value, int | float):
        return human_seconds(float(value))
    return str(value)


def say(phrase: Phrase) -> str:
    """The phrase in the reply's language, as plain text (the caller escapes it)."""
    template = TEXTS.get(phrase.key)
    if template is None:
        return str(phrase)  # never fail a reply; the unit test keeps this path unused
    values = {name: _shown(name, value) for name, value in phrase.values}
    try:
        return _(template).format(**values)
    except (KeyError, IndexError, ValueError):
        return str(phrase)
