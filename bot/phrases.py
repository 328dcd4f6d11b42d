"""What a service tells the user, without words: a key and its values.

Services (check items, preflight findings, plan step titles, refusals) return a
:class:`Phrase`; the rendering layer (:mod:`handlers.render.phrases`) looks the key up in its
tables and words it in the reply's language. A value's name says how it is shown:
``*_bytes`` as a size, ``*_s`` as a duration, a :class:`Phrase` (an error's reason, say)
worded in turn, anything else as given (names, settings, LSNs stay as PostgreSQL prints them).

``str(phrase)`` is a stable, language-neutral form (``key name=value ...``) for logs and
audit rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Phrase:
    """A key of the rendering layer's tables and the values it is worded with."""

    key: str
    values: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def of(cls, key: str, **values: Value) -> Phrase:
        """``Phrase.of("disk.free", free_bytes=10, need_bytes=5)``."""
        return cls(key, tuple(sorted(values.items())))

    def as_dict(self) -> dict[str, Value]:
        """The values by name."""
        return dict(self.values)

    def map_text(self, change: Callable[[str], str]) -> Phrase:
        """The phrase with ``change`` applied to every text value, nested phrases too
        (redaction: a value may quote a server message or command output)."""
        return Phrase(
            self.key,
            tuple(
                (name, change(value) if isinstance(value, str) else _mapped(value, change))
                for name, value in self.values
            ),
        )

    def __str__(self) -> str:
        if not self.values:
            return self.key
        return (
            self.key
            + " "
            + " ".join(
                f"{name}=({value})" if isinstance(value, Phrase) else f"{name}={value}"
                for name, value in self.values
            )
        )


Value = str | int | float | Phrase


def _mapped(value: Value, change: Callable[[str], str]) -> Value:
    return value.map_text(change) if isinstance(value, Phrase) else value
