"""psycopg 3 adapter for the Postgres port: all of replbot's SQL lives here.

Each call opens a short-lived autocommit connection with a connect timeout and a
statement timeout, so a dead or slow node costs at most ``query_timeout`` seconds and never
blocks the others. Every value is a bound parameter; version-dependent columns are chosen
from constants by ``server_version_num`` (PostgreSQL 13 and newer are supported).
Library errors are translated into :mod:`bot.errors` with ``raise ... from exc``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.rows import AsyncRowFactory, TupleRow, class_row, scalar_row

from bot.adapters.monitor_pg import (
    MIN_SUPPORTED_VERSION,
    POLL_ROW,
    WALDIR_PRIVILEGE_SQL,
    parse_snapshot,
    poll_sql,
)
from bot.config import NodeConfig
from bot.errors import (
    NodeUnavailable,
    ServerRefused,
    SlotActive,
    SlotAlreadyExists,
    SlotError,
    SlotNotFound,
)
from bot.models import HbaRule, NodeSnapshot
from bot.phrases import Phrase

_SETTINGS_SQL = "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s)"

_HBA_SQL = """
SELECT line_number, type, database, user_name, address, auth_method, error
  FROM pg_catalog.pg_hba_file_rules
 WHERE 'replication' = ANY(database) OR 'all' = ANY(database) OR error IS NOT NULL
 ORDER BY line_number
"""

_USAGE_SQL = """
SELECT (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int AS walsenders,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots
"""


_WALDIR_RECHECK_S = 300.0

_PRIVILEGES_SQL = """
SELECT r.rolsuper AS superuser,
       pg_catalog.has_parameter_privilege(%s, 'ALTER SYSTEM') AS alter_system,
       pg_catalog.has_function_privilege('pg_catalog.pg_reload_conf()', 'EXECUTE') AS reload_conf
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""
_PRIVILEGES_14_SQL = """
SELECT r.rolsuper AS superuser, NULL::bool AS alter_system,
       pg_catalog.has_function_privilege('pg_catalog.pg_reload_conf()', 'EXECUTE') AS reload_conf
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""

_Conn = psycopg.AsyncConnection[TupleRow]
Statements = Callable[[int], Sequence[tuple[str, Sequence[Any]]]]
R = TypeVar("R")


@dataclass(frozen=True)
class _Setting:
    """A row of pg_settings: ``SELECT name, setting``."""

    name: str
    setting: str


@dataclass(frozen=True)
class _HbaLine:
    """A row of :data:`_HBA_SQL` (pg_hba_file_rules)."""

    line_number: int | None
    type: str | None
    database: list[str] | None
    user_name: list[str] | None
    address: str | None
    auth_method: str | None
    error: str | None


@dataclass(frozen=True)
class _Usage:
    """The row of :data:`_USAGE_SQL`."""

    walsenders: int
    slots: int


@dataclass(frozen=True)
class _Privileges:
    """The row of :data:`_PRIVILEGES_SQL` (``alter_system`` NULL on PostgreSQL 14)."""

    superuser: bool
    alter_system: bool | None
    reload_conf: bool


class _StaleConnection(Exception):
    """A kept connection turned out dead; retry on a fresh one."""


class PsycopgPostgres:
    """The Postgres port over psycopg 3 (async).

    Connections are kept for reuse per (cluster, node) (at most ``max_idle_per_node``, closed after
    ``idle_seconds`` unused): a fresh SCRAM login costs far more than the queries. A reused
    connection that turns out dead is replaced once; a new one fails fast with the server's
    own reason (refused, auth failed), which /status shows for a node that is down.
    """

    def __init__(
        self,
        query_timeout_s: float = 10.0,
        application_name: str = "replbot",
        max_idle_per_node: int = 2,
        idle_seconds: float = 60.0,
    ) -> None:
        self._timeout = query_timeout_s
        self._application_name = application_name
        self._max_idle = max_idle_per_node
        self._idle_seconds = idle_seconds
        self._idle: dict[tuple[str, str], list[tuple[float, _Conn]]] = {}
        # (cluster, node) -> (monotonic time checked, the role may call pg_ls_waldir())
        self._waldir: dict[tuple[str, str], tuple[float, bool]] = {}

    async def close(self) -> None:
        """Close every kept connection."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, conn in connections:
                await conn.close()

    async def _open(self, node: NodeConfig) -> psycopg.AsyncConnection[TupleRow]:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(self._timeout)),
            "application_name": self._application_name,
            "options": f"-c statement_timeout={int(self._timeout * 1000)}",
        }
        if node.password is not None:
            kwargs["password"] = node.password.reveal()
        try:
            async with asyncio.timeout(self._timeout + 1):
                conn = await psycopg.AsyncConnection.connect(node.dsn, **kwargs)
        except TimeoutError as exc:
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.no_answer", timeout_s=self._timeout)
            ) from exc
        except psycopg.Error as exc:
            raise NodeUnavailable(node.name, _reason(exc)) from exc
        if conn.info.server_version < MIN_SUPPORTED_VERSION:
            await conn.close()
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.too_old", version=conn.info.server_version)
            )
        return conn

    async def _take_idle(self, node: NodeConfig) -> psycopg.AsyncConnection[TupleRow] | None:
        pool = self._idle.get(_key(node), [])
        now = time.monotonic()
        while pool:
            last_used, conn = pool.pop()
            if not conn.closed and now - last_used <= self._idle_seconds:
                return conn
            await conn.close()
        return None

    def _release(self, node: NodeConfig, conn: psycopg.AsyncConnection[TupleRow]) -> bool:
        pool = self._idle.setdefault(_key(node), [])
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        if healthy and len(pool) < self._max_idle:
            pool.append((time.monotonic(), conn))
            return True
        return False

    async def _run(
        self, node: NodeConfig, statements: Statements, row: AsyncRowFactory[R]
    ) -> list[list[R]]:
        """Run ``statements(server_version)`` on one connection; the rows of each statement,
        each made by ``row`` (a psycopg row factory: ``class_row(...)``, ``scalar_row``).

        A kept connection is used without a liveness probe; if it turns out dead (the server
        restarted), the statements run once more on a fresh connection, whose failure is then
        reported with the server's own reason.
        """
        conn = await self._take_idle(node)
        if conn is not None:
            try:
                return await self._execute(node, conn, statements, row)
            except _StaleConnection:
                pass
        return await self._execute(node, await self._open(node), statements, row, fresh=True)

    async def _execute(
        self,
        node: NodeConfig,
        conn: psycopg.AsyncConnection[TupleRow],
        statements: Statements,
        row: AsyncRowFactory[R],
        fresh: bool = False,
    ) -> list[list[R]]:
        kept = False
        try:
            results: list[list[R]] = []
            async with asyncio.timeout(self._timeout + 1):
                for sql, params in statements(conn.info.server_version):
                    cursor = conn.cursor(row_factory=row)
                    await cursor.execute(sql, params)
                    results.append(await cursor.fetchall() if cursor.description else [])
            kept = self._release(node, conn)
            return results
        except pg_errors.QueryCanceled as exc:
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.query_timeout", timeout_s=self._timeout)
            ) from exc
        except TimeoutError as exc:
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.no_answer", timeout_s=self._timeout)
            ) from exc
        except psycopg.Error as exc:
            if not is_connection_failure(conn, exc):
                # The server refused the statement: a domain error carrying its SQLSTATE.
                raise ServerRefused(node.name, exc.sqlstate or "?", _reason(exc)) from exc
            if not fresh:
                raise _StaleConnection from exc
            raise NodeUnavailable(node.name, _reason(exc)) from exc
        finally:
            if not kept:
                await conn.close()

    async def _fetch(
        self, node: NodeConfig, sql: str, params: Sequence[Any] = (), *, row: AsyncRowFactory[R]
    ) -> list[R]:
        """The rows of one statement, each made by ``row``."""
        return (await self._run(node, lambda _version: [(sql, params)], row))[0]

    async def snapshot(self, node: NodeConfig) -> NodeSnapshot:
        """The node's replication state: the probe statement, on a kept connection."""
        versions: list[int] = []
        waldir = await self._waldir_allowed(node)

        def statements(version: int) -> list[tuple[str, Sequence[Any]]]:
            versions.append(version)
            return [(poll_sql(version, waldir=waldir), ())]

        (rows,) = await self._run(node, statements, POLL_ROW)
        if not rows:
            raise NodeUnavailable(node.name, Phrase.of("error.pg.no_row"))
        return parse_snapshot(node.cluster, node.name, versions[-1], rows[0])

    async def _waldir_allowed(self, node: NodeConfig) -> bool:
        """Whether the bot's role may call pg_ls_waldir() on ``node`` (re-checked every 5 min,
        so a GRANT is noticed without a restart)."""
        known = self._waldir.get(_key(node))
        now = time.monotonic()
        if known is not None and now - known[0] < _WALDIR_RECHECK_S:
            return known[1]
        rows = await self._fetch(node, WALDIR_PRIVILEGE_SQL, row=scalar_row)
        allowed = bool(rows and rows[0])
        self._waldir[_key(node)] = (now, allowed)
        return allowed

    async def settings(self, node: NodeConfig, names: Sequence[str]) -> dict[str, str]:
        """Current values of the named settings (missing names are absent)."""
        rows = await self._fetch(node, _SETTINGS_SQL, (list(names),), row=class_row(_Setting))
        return {str(row.name): str(row.setting) for row in rows}

    async def replication_hba_rules(self, node: NodeConfig) -> list[HbaRule] | None:
        """pg_hba lines that may allow replication; None when the role may not read them."""
        try:
            rows = await self._fetch(node, _HBA_SQL, row=class_row(_HbaLine))
        except ServerRefused as exc:
            if exc.sqlstate == "42501":  # insufficient_privilege
                return None
            raise
        return [
            HbaRule(
                line_number=int(row.line_number or 0),
                type=str(row.type or ""),
                databases=tuple(row.database or ()),
                users=tuple(row.user_name or ()),
                address=row.address,
                auth_method=str(row.auth_method or ""),
                error=row.error,
            )
            for row in rows
        ]

    async def usage_counts(self, node: NodeConfig) -> tuple[int, int]:
        """(walsenders in use, replication slots in use)."""
        (usage,) = await self._fetch(node, _USAGE_SQL, row=class_row(_Usage))
        return int(usage.walsenders), int(usage.slots)

    async def create_physical_slot(self, node: NodeConfig, slot: str) -> None:
        """Create a physical slot; SlotAlreadyExists if it exists."""
        try:
            await self._fetch(
                node,
                "SELECT pg_catalog.pg_create_physical_replication_slot(%s)::text",
                (slot,),
                row=scalar_row,
            )
        except ServerRefused as exc:
            raise _slot_error(exc, node, slot) from exc

    async def drop_slot(self, node: NodeConfig, slot: str) -> None:
        """Drop a slot; SlotNotFound / SlotActive when refused."""
        try:
            await self._fetch(
                node,
                "SELECT pg_catalog.pg_drop_replication_slot(%s)::text",
                (slot,),
                row=scalar_row,
            )
        except ServerRefused as exc:
            raise _slot_error(exc, node, slot) from exc

    async def copy_physical_slot(self, node: NodeConfig, source: str, target: str) -> None:
        """pg_copy_physical_replication_slot(source, target): the copy keeps source's WAL."""
        try:
            await self._fetch(
                node,
                "SELECT pg_catalog.pg_copy_physical_replication_slot(%s, %s)::text",
                (source, target),
                row=scalar_row,
            )
        except ServerRefused as exc:
            raise _slot_error(exc, node, source, target) from exc

    async def execute(
        self, node: NodeConfig, statement: str, params: Sequence[str | int] = ()
    ) -> list[tuple[object, ...]]:
        """Run one plan statement (values bound client-side, autocommit); its rows."""
        conn = await self._take_idle(node)
        if conn is not None:
            try:
                return await self._client_execute(node, conn, statement, params, fresh=False)
            except _StaleConnection:
                pass
        return await self._client_execute(
            node, await self._open(node), statement, params, fresh=True
        )

    async def total_database_size(self, node: NodeConfig) -> int:
        """Sum of pg_database_size over all databases, in bytes."""
        sizes = await self._fetch(
            node,
            "SELECT sum(pg_catalog.pg_database_size(oid))::bigint FROM pg_catalog.pg_database",
            row=scalar_row,
        )
        return int(sizes[0] or 0)

    async def auto_conf_settings(self, node: NodeConfig, names: Sequence[str]) -> dict[str, str]:
        """Settings whose value comes from postgresql.auto.conf (they travel with a backup)."""
        rows = await self._fetch(
            node,
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s) "
            "AND sourcefile LIKE %s",
            (list(names), "%postgresql.auto.conf"),
            row=class_row(_Setting),
        )
        return {str(row.name): str(row.setting) for row in rows}

    async def missing_alter_system_privileges(self, node: NodeConfig, parameter: str) -> list[str]:
        """What the bot's role lacks to ``ALTER SYSTEM SET parameter`` and reload on ``node``.

        PostgreSQL 15+ grants it per parameter (``GRANT ALTER SYSTEM ON PARAMETER``) and
        ``pg_reload_conf()`` by ``GRANT EXECUTE``; on 14 only a superuser may ALTER SYSTEM.
        """

        def statements(version: int) -> list[tuple[str, Sequence[Any]]]:
            if version >= 150000:
                return [(_PRIVILEGES_SQL, (parameter,))]
            return [(_PRIVILEGES_14_SQL, ())]

        (rows,) = await self._run(node, statements, class_row(_Privileges))
        granted = rows[0]
        if granted.superuser:
            return []
        if granted.alter_system is None:
            return ["superuser (ALTER SYSTEM on PostgreSQL 14)"]
        missing = []
        if not granted.alter_system:
            missing.append(f"GRANT ALTER SYSTEM ON PARAMETER {parameter}")
        if not granted.reload_conf:
            missing.append("GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf()")
        return missing

    async def run_plan_sql(
        self, node: NodeConfig, statement: str, params: Sequence[str | int]
    ) -> None:
        """Run one statement of a plan step. Values are bound client-side (quoted by psycopg):
        ``ALTER SYSTEM`` takes no server-side parameters. A dead kept connection is replaced
        once, as in :meth:`_run`."""
        await self.execute(node, statement, params)

    async def _client_execute(
        self,
        node: NodeConfig,
        conn: psycopg.AsyncConnection[TupleRow],
        statement: str,
        params: Sequence[str | int],
        fresh: bool,
    ) -> list[tuple[object, ...]]:
        kept = False
        try:
            async with asyncio.timeout(self._timeout + 1):
                cursor = psycopg.AsyncClientCursor(conn)
                await cursor.execute(statement, tuple(params))
                rows = list(await cursor.fetchall()) if cursor.description else []
            kept = self._release(node, conn)
            return rows
        except pg_errors.QueryCanceled as exc:
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.query_timeout", timeout_s=self._timeout)
            ) from exc
        except TimeoutError as exc:
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.no_answer", timeout_s=self._timeout)
            ) from exc
        except psycopg.Error as exc:
            if not is_connection_failure(conn, exc):
                raise ServerRefused(node.name, exc.sqlstate or "?", _reason(exc)) from exc
            if not fresh:
                raise _StaleConnection from exc
            raise NodeUnavailable(node.name, _reason(exc)) from exc
        finally:
            if not kept:
                await conn.close()


def is_connection_failure(conn: psycopg.AsyncConnection[Any], exc: psycopg.Error) -> bool:
    """True when ``exc`` means the connection is gone, not that the server refused a statement.

    psycopg classes many server refusals as OperationalError (55006 object_in_use, 53400
    configuration_limit_exceeded), so the class says nothing: only a broken connection, an
    error without a SQLSTATE (raised by libpq itself) or SQLSTATE class 08 / 57P counts.
    """
    state = exc.sqlstate
    return conn.broken or state is None or state.startswith(("08", "57P"))


_SLOT_REFUSALS: dict[str, Callable[[str, str, str], SlotError]] = {
    "42710": lambda node, slot, target: SlotAlreadyExists(
        Phrase.of("error.slot.exists", slot=target or slot, node=node)
    ),
    "42704": lambda node, slot, _: SlotNotFound(
        Phrase.of("error.slot.not_found", slot=slot, node=node)
    ),
    "55006": lambda node, slot, _: SlotActive(Phrase.of("error.slot.active", slot=slot, node=node)),
    "42501": lambda node, _s, _t: SlotError(Phrase.of("error.slot.no_replication", node=node)),
    "53400": lambda node, _s, _t: SlotError(Phrase.of("error.slot.all_used", node=node)),
}


def _slot_error(exc: ServerRefused, node: NodeConfig, slot: str, target: str = "") -> SlotError:
    """The domain error for a slot statement the server refused, chosen by SQLSTATE."""
    make = _SLOT_REFUSALS.get(exc.sqlstate)
    if make is not None:
        return make(node.name, slot, target)
    return SlotError(Phrase.of("error.slot.refused", slot=slot, node=node.name, reason=exc.detail))


def _key(node: NodeConfig) -> tuple[str, str]:
    """Kept connections belong to (cluster, node): node names repeat across clusters."""
    return (node.cluster, node.name)


def _reason(exc: psycopg.Error) -> str:
    """First line of a libpq/server error: never contains a password."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
