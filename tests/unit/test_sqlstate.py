"""Server refusals are told from dead connections by SQLSTATE, not by psycopg's classes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from bot.adapters.postgres import is_connection_failure


def conn(broken: bool = False) -> Any:
    return SimpleNamespace(broken=broken)


@pytest.mark.parametrize(
    "error",
    [pg_errors.ObjectInUse, pg_errors.ConfigurationLimitExceeded, pg_errors.DuplicateObject],
)
def test_a_server_refusal_on_a_healthy_connection_is_not_a_connection_failure(
    error: type[psycopg.Error],
) -> None:
    assert issubclass(pg_errors.ObjectInUse, psycopg.OperationalError)  # why classes mislead
    assert not is_connection_failure(conn(), error("refused"))


@pytest.mark.parametrize(
    "error", [pg_errors.AdminShutdown, pg_errors.ConnectionFailure, pg_errors.CrashShutdown]
)
def test_connection_class_sqlstates_are_connection_failures(error: type[psycopg.Error]) -> None:
    assert is_connection_failure(conn(), error("gone"))


def test_an_error_without_sqlstate_or_on_a_broken_connection_is_a_connection_failure() -> None:
    assert is_connection_failure(conn(), psycopg.OperationalError("server closed the connection"))
    assert is_connection_failure(conn(broken=True), pg_errors.ObjectInUse("refused"))
