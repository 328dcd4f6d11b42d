"""The node probe: one statement that reads a node's whole replication state into a NodeSnapshot.

This is replbot's one read path. :func:`poll_sql` and :func:`parse_snapshot` are used by
the monitor's kept connections here (:class:`PsycopgMonitorProbe`) and by the command
adapter (:meth:`bot.adapters.postgres.PsycopgPostgres.snapshot`) for /status, /slots and
the rebuild's preflight and verify, so every reader sees the same columns, parsing and model.

A single statement returns everything — role, version, timeline, WAL position, replay delay,
``pg_stat_replication`` joined to its slots (``json_agg``), ``pg_replication_slots`` with
the WAL each one retains (``json_agg``), ``pg_stat_wal_receiver`` (``row_to_json``) and, on a
primary, what keeps WAL for replicas without a slot (``wal_keep_size``, ``archive_mode`` and the
oldest segment still in ``pg_wal``: :class:`bot.models.WalKeep`) — so
a poll costs one round trip on an open connection. The statement is chosen once per
connection from ``conn.info.server_version`` (``inactive_since`` and
``invalidation_reason`` exist from PostgreSQL 17).

Every poll is bounded three ways: libpq's ``connect_timeout``, the server's
``statement_timeout``, and ``asyncio.timeout`` around both. A connection that failed or
timed out is dropped and re-opened at the next poll. Values come back as JSON numbers
(LSN differences cast to bigint, intervals as epoch seconds), never as text to re-parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow, class_row, scalar_row

from bot.config import NodeConfig
from bot.errors import NodeUnavailable
from bot.models import NodeSnapshot, ReceiverInfo, SlotInfo, WalKeep, WalSender
from bot.phrases import Phrase

MIN_SUPPORTED_VERSION = 140000  # PostgreSQL 14–18 are supported
_CLOSE_TIMEOUT_S = 1.0

_CURRENT = (
    "CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn() "
    "ELSE pg_catalog.pg_current_wal_lsn() END"
)

_POLL_SQL = """
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_catalog.pg_is_in_recovery()
            THEN (SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver)
            ELSE ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))
                 ::bit(32)::int END AS timeline,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
            ELSE pg_catalog.pg_current_wal_lsn() END::text AS lsn,
       pg_catalog.current_setting('server_version') AS server_version,
       CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN NULL
            WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp())::float8
       END AS replay_delay_s,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                 'pid', r.pid,
                 'application_name', coalesce(r.application_name, ''),
                 'client_addr', pg_catalog.host(r.client_addr),
                 'state', r.state,
                 'sent_lsn', r.sent_lsn::text,
                 'write_lsn', r.write_lsn::text,
                 'flush_lsn', r.flush_lsn::text,
                 'replay_lsn', r.replay_lsn::text,
                 'write_lag', extract(epoch FROM r.write_lag)::float8,
                 'flush_lag', extract(epoch FROM r.flush_lag)::float8,
                 'replay_lag', extract(epoch FROM r.replay_lag)::float8,
                 'sync_state', r.sync_state,
                 'slot_name', s.slot_name::text,
                 'lag_bytes', CASE WHEN pg_catalog.pg_is_in_recovery() OR r.replay_lsn IS NULL
                                   THEN NULL
                                   ELSE pg_catalog.pg_wal_lsn_diff(
                                          pg_catalog.pg_current_wal_lsn(), r.replay_lsn)::bigint
                              END) ORDER BY r.pid)
          FROM pg_catalog.pg_stat_replication r
          LEFT JOIN pg_catalog.pg_replication_slots s ON s.active_pid = r.pid) AS walsenders,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                 'name', slot_name::text,
                 'slot_type', slot_type,
                 'active', active,
                 'active_pid', active_pid,
                 'restart_lsn', restart_lsn::text,
                 'retained', CASE WHEN restart_lsn IS NULL THEN NULL
                                  ELSE pg_catalog.pg_wal_lsn_diff({current}, restart_lsn)::bigint
                             END,
                 'wal_status', wal_status,
                 'safe_wal_size', safe_wal_size,
                 'inactive_since', {inactive_since},
                 'invalidation_reason', {invalidation_reason}) ORDER BY slot_name)
          FROM pg_catalog.pg_replication_slots) AS slots,
       (SELECT pg_catalog.row_to_json(w)
          FROM (SELECT status, slot_name::text AS slot_name, received_tli,
                       written_lsn::text AS written_lsn, flushed_lsn::text AS flushed_lsn,
                       sender_host, sender_port
                  FROM pg_catalog.pg_stat_wal_receiver) w) AS receiver,
       CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN pg_catalog.json_build_object(
         'wal_keep', pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_keep_size')),
         'segment_size', pg_catalog.pg_size_bytes(pg_catalog.current_setting('wal_segment_size')),
         'archive_mode', pg_catalog.current_setting('archive_mode'),
         'readable', pg_catalog.has_function_privilege('pg_catalog.pg_ls_waldir()', 'EXECUTE'),
         'oldest', {oldest}) END AS wal_keep
"""

# The oldest WAL segment in pg_wal (a directory listing: ≈0.3 ms with a few hundred files).
# Ordered by log/segment, not timeline: older timelines' files sort first by name. Only in
# the statement when the role may call pg_ls_waldir() (checked per connection): PostgreSQL
# checks function privileges when the plan starts, even inside a CASE branch never taken.
_OLDEST_SQL = """(SELECT name FROM pg_catalog.pg_ls_waldir()
                    WHERE name ~ '^[0-9A-F]{24}$' ORDER BY substr(name, 9) LIMIT 1)"""

#: Whether the connected role may list pg_wal (pg_monitor or an explicit GRANT EXECUTE).
WALDIR_PRIVILEGE_SQL = (
    "SELECT pg_catalog.has_function_privilege('pg_catalog.pg_ls_waldir()', 'EXECUTE') "
    "AS waldir_readable"
)


@dataclass(frozen=True)
class PollRow:
    """The one row of :func:`poll_sql`, by column name (``psycopg.rows.class_row(PollRow)``).

    The JSON columns arrive decoded (lists and dicts); :func:`parse_snapshot` turns them into
    the models.
    """

    in_recovery: bool
    timeline: int | None
    lsn: str | None
    server_version: str | None
    replay_delay_s: float | None
    walsenders: list[dict[str, Any]] | None
    slots: list[dict[str, Any]] | None
    receiver: dict[str, Any] | None
    wal_keep: dict[str, Any] | None = None


#: Rows of :func:`poll_sql` as :class:`PollRow` (pass to ``conn.cursor(row_factory=...)``).
POLL_ROW = class_row(PollRow)


def poll_sql(server_version: int, waldir: bool = False) -> str:
    """The poll statement for a server of ``server_version`` (e.g. 150018).

    ``waldir``: the role may call ``pg_ls_waldir()`` (:data:`WALDIR_PRIVILEGE_SQL`), so the
    statement also reads the oldest WAL segment of a primary.
    """
    oldest = _OLDEST_SQL if waldir else "NULL::text"
    if server_version >= 170000:
        return _POLL_SQL.format(
            current=_CURRENT,
            inactive_since="extract(epoch FROM inactive_since)::float8",
            invalidation_reason="invalidation_reason",
            oldest=oldest,
        )
    return _POLL_SQL.format(
        current=_CURRENT,
        inactive_since="NULL::float8",
        invalidation_reason="NULL::text",
        oldest=oldest,
    )


class PsycopgMonitorProbe:
    """The MonitorProbe port over psycopg 3: a kept-open autocommit connection per node."""

    def __init__(self, timeout_s: float, application_name: str = "replbot-monitor") -> None:
        self._timeout = timeout_s
        self._application_name = application_name
        self._conns: dict[tuple[str, str], psycopg.AsyncConnection[TupleRow]] = {}
        self._sql: dict[tuple[str, str], str] = {}
        self.round_trips = 0  # statements sent: one per successful or failed poll
        self.connects = 0

    async def poll(self, cluster: str, node: NodeConfig) -> NodeSnapshot:
        """One statement on the node's connection (opened first if needed)."""
        key = (cluster, node.name)
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._connection(key, node)
                self.round_trips += 1
                cursor = conn.cursor(row_factory=POLL_ROW)
                await cursor.execute(self._sql[key])
                row = await cursor.fetchone()
        except TimeoutError as exc:
            await self._discard(key)
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.no_answer", timeout_s=self._timeout)
            ) from exc
        except pg_errors.QueryCanceled as exc:
            raise NodeUnavailable(
                node.name, Phrase.of("error.pg.query_timeout", timeout_s=self._timeout)
            ) from exc
        except psycopg.Error as exc:
            await self._discard(key)
            raise NodeUnavailable(node.name, _reason(exc)) from exc
        if row is None:
            raise NodeUnavailable(node.name, Phrase.of("error.pg.no_row"))
        version = self._conns[key].info.server_version
        return parse_snapshot(cluster, node.name, version, row)

    async def _connection(
        self, key: tuple[str, str], node: NodeConfig
    ) -> psycopg.AsyncConnection[TupleRow]:
        conn = self._conns.get(key)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        await self._discard(key)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(self._timeout)),
            "application_name": self._application_name,
            "options": f"-c statement_timeout={max(1, int(self._timeout * 1000))}",
        }
        if node.password is not None:
            kwargs["password"] = node.password.reveal()
        self.connects += 1
        conn = await psycopg.AsyncConnection.connect(node.dsn, **kwargs)
        version = conn.info.server_version
        if version < MIN_SUPPORTED_VERSION:
            await conn.close()
            raise NodeUnavailable(node.name, Phrase.of("error.pg.too_old", version=version))
        try:
            cursor = conn.cursor(row_factory=scalar_row)
            await cursor.execute(WALDIR_PRIVILEGE_SQL)
            allowed = await cursor.fetchone()
        except BaseException:
            await conn.close()
            raise
        self._conns[key] = conn
        self._sql[key] = poll_sql(version, waldir=bool(allowed))
        return conn

    async def _discard(self, key: tuple[str, str]) -> None:
        conn = self._conns.pop(key, None)
        self._sql.pop(key, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await conn.close()

    async def close(self) -> None:
        """Close every connection."""
        for key in list(self._conns):
            await self._discard(key)


def parse_snapshot(cluster: str, node: str, version: int, row: PollRow) -> NodeSnapshot:
    """The NodeSnapshot of one row of :func:`poll_sql` (``at`` is left to the caller)."""
    return NodeSnapshot(
        cluster=cluster,
        node=node,
        at=0.0,
        in_recovery=bool(row.in_recovery),
        server_version_num=version,
        timeline=None if row.timeline is None else int(row.timeline),
        lsn=row.lsn,
        walsenders=tuple(_walsender(s) for s in row.walsenders or ()),
        slots=tuple(_slot(s) for s in row.slots or ()),
        receiver=_receiver(row.receiver) if row.receiver else None,
        server_version=None if row.server_version is None else str(row.server_version),
        replay_delay_s=_float(row.replay_delay_s),
        wal_keep=_wal_keep(row.wal_keep) if row.wal_keep else None,
    )


def _wal_keep(item: dict[str, Any]) -> WalKeep:
    return WalKeep(
        wal_keep_size=int(item["wal_keep"]),
        segment_size=int(item["segment_size"]),
        archive_mode=str(item["archive_mode"]),
        waldir_readable=bool(item["readable"]),
        oldest_segment=item.get("oldest"),
    )


def _walsender(item: dict[str, Any]) -> WalSender:
    return WalSender(
        pid=int(item["pid"]),
        application_name=str(item["application_name"]),
        client_addr=item["client_addr"],
        state=item["state"],
        sent_lsn=item["sent_lsn"],
        write_lsn=item["write_lsn"],
        flush_lsn=item["flush_lsn"],
        replay_lsn=item["replay_lsn"],
        write_lag_s=_float(item["write_lag"]),
        flush_lag_s=_float(item["flush_lag"]),
        replay_lag_s=_float(item["replay_lag"]),
        sync_state=item["sync_state"],
        slot_name=item["slot_name"],
        replay_lag_bytes=_int(item["lag_bytes"]),
    )


def _slot(item: dict[str, Any]) -> SlotInfo:
    since = item["inactive_since"]
    return SlotInfo(
        name=str(item["name"]),
        slot_type=str(item["slot_type"]),
        active=bool(item["active"]),
        active_pid=_int(item["active_pid"]),
        restart_lsn=item["restart_lsn"],
        retained_bytes=_int(item["retained"]),
        wal_status=item["wal_status"],
        safe_wal_size=_int(item["safe_wal_size"]),
        inactive_since=None if since is None else datetime.fromtimestamp(float(since), UTC),
        invalidation_reason=item["invalidation_reason"],
    )


def _receiver(item: dict[str, Any]) -> ReceiverInfo:
    return ReceiverInfo(
        status=item.get("status"),
        slot_name=item.get("slot_name"),
        received_tli=_int(item.get("received_tli")),
        flushed_lsn=item.get("flushed_lsn"),
        sender_host=item.get("sender_host"),
        sender_port=_int(item.get("sender_port")),
        written_lsn=item.get("written_lsn"),
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _reason(exc: psycopg.Error) -> str:
    """First line of a libpq/server error: never contains a password."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
