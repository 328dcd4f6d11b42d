"""Keep secrets inside the process: scrub known secret values and password-looking text."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PASSWORD_PATTERNS = (
    re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)"),
    re.compile(r"(?i)(://[^:/@\s]+:)([^@\s]+)(@)"),
    re.compile(r"(bot)(\d{5,}:[A-Za-z0-9_-]{20,})"),
)
MASK = "***"


class Redactor:
    """Replaces every known secret value and password-like fragment with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Remember one more secret value."""
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values this redactor masks."""
        return tuple(self._secrets)

    def __call__(self, text: str) -> str:
        """``text`` with secrets masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _PASSWORD_PATTERNS[0].sub(lambda m: m.group(1) + MASK, text)
        text = _PASSWORD_PATTERNS[1].sub(lambda m: m.group(1) + MASK + m.group(3), text)
        return _PASSWORD_PATTERNS[2].sub(lambda m: m.group(1) + MASK, text)
