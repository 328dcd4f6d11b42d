"""Words for the :class:`~bot.phrases.Phrase` values services return.

Each feature's render module registers its table (key -> English msgid, marked with ``N_``
so Babel extracts it) with :func:`register`; :func:`say` looks a phrase up and formats it in
the reply's language. tests/unit/test_phrases.py checks that every key a service uses has a
text and that every placeholder of a text is a value the service gives.
"""

from __future__ import annotations

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


def _shown(name: str, value: Value) -> str:
    if isinstance(value, Phrase):
        return say(value)
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
