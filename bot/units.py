"""Sizes and durations with units, as people write them in config files and chat commands.

``parse_bytes("50MB") == 52428800`` and ``parse_duration("10min") == 600.0``. Size units are
PostgreSQL's (powers of 1024: ``kB``, ``MB``, ``GB``, ``TB``; ``KiB``/``MiB``/… are accepted
too); a bare number is bytes or seconds. Both raise ValueError with a short reason.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")

_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}

_DURATION_UNITS = {
    "": 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}


def parse_bytes(value: str | int) -> int:
    """'50MB' -> 52428800; an int is taken as bytes. ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 50MB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _NUMBER.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size like 50MB or 1GB")
    unit = match.group(2).lower()
    if unit not in _BYTE_UNITS:
        raise ValueError(f"unknown size unit {match.group(2)!r} (use B, kB, MB, GB or TB)")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


def parse_duration(value: str | int | float) -> float:
    """'10min' -> 600.0, '1h' -> 3600.0, '500ms' -> 0.5; a number is seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _NUMBER.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration like 30s, 10min or 1h")
    unit = match.group(2).lower()
    if unit not in _DURATION_UNITS:
        raise ValueError(f"unknown duration unit {match.group(2)!r} (use ms, s, min, h or d)")
    return float(match.group(1)) * _DURATION_UNITS[unit]
