"""libpq connection strings, parsed by libpq itself (through psycopg), never by a regex."""

from __future__ import annotations

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict


def parse_conninfo(dsn: str) -> dict[str, str]:
    """Keyword/value pairs of a keyword or URI conninfo; ValueError (libpq's reason) if it
    is not one."""
    try:
        return {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    except ProgrammingError as exc:
        raise ValueError(str(exc).strip()) from exc
