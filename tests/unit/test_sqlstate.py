"""Server refusals are told from dead connections by SQLSTATE, not by psycopg's classes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg.rows import scalar_row

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


class _RefusingConnection:
    """Just enough of an AsyncConnection whose statement the server refuses."""

    broken = False
    closed = False

    class info:  # mirrors psycopg's conn.info
        server_version = 160004

    def cursor(self, row_factory: object = None) -> _RefusingConnection:
        return self

    async def execute(self, sql: str, params: object) -> None:
        raise pg_errors.InsufficientPrivilege("permission denied for database locked")

    async def close(self) -> None:
        self.closed = True


async def test_a_refused_read_becomes_a_domain_error_with_its_sqlstate() -> None:
    from bot.adapters.postgres import PsycopgPostgres
    from bot.config import NodeConfig
    from bot.errors import NodeUnavailable, ServerRefused
    from bot.models import NodeRole

    node = NodeConfig(name="pg1", role=NodeRole.PRIMARY, dsn="host=db1", cluster="main")
    conn = _RefusingConnection()
    adapter = PsycopgPostgres()
    with pytest.raises(ServerRefused) as caught:
        await adapter._execute(node, conn, lambda _v: [("SELECT 1", ())], scalar_row)  # type: ignore[arg-type]
    assert isinstance(caught.value, NodeUnavailable)  # readers handle it like a down node
    assert caught.value.sqlstate == "42501"
    assert "permission denied for database locked" in caught.value.user_message
    assert conn.closed
