"""Alert state, mutes, node facts and the outbox in SQLite (the audit database file by default).

One connection, WAL mode; every operation holds one asyncio lock, so a transaction opened
with :meth:`SqliteAlertStore.transaction` never interleaves with another task's writes. The
outbox lives in the same file as the alert state because a firing alert and the message that
announces it must commit together. A partial unique index allows one firing alert per key.

Delivery state lives here too: ``alert_chat_moves`` maps a group's old id to the supergroup
it became (every later enqueue for the old id goes to the new one, so the configured id keeps
working), and ``alert_chat_refusals`` lists the chats that refuse the bot (kicked, blocked,
gone) so their notice is sent once, not once per message or restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite

from bot.adapters.sqlite import open_database
from bot.errors import AuditError
from bot.models import (
    Alert,
    AlertRule,
    AlertState,
    ChartRef,
    MessageButton,
    Mute,
    NodeFacts,
    OutboxItem,
    OutgoingMessage,
    Severity,
)
from bot.phrases import Phrase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster      TEXT    NOT NULL,
    node         TEXT    NOT NULL,
    rule         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    figures      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    first_seen   REAL    NOT NULL,
    fired_at     REAL    NOT NULL,
    announced_at REAL,
    last_sent_at REAL,
    resolved_at  REAL,
    acked_by     TEXT,
    acked_at     REAL,
    muted_until  REAL,
    repeat       INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_firing_per_key
    ON alerts (cluster, node, rule, subject) WHERE state = 'firing';
CREATE TABLE IF NOT EXISTS alert_mutes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster    TEXT NOT NULL,
    node       TEXT,
    until      REAL NOT NULL,
    by         TEXT NOT NULL,
    created_at REAL NOT NULL,
    ended_at   REAL
);
CREATE TABLE IF NOT EXISTS node_facts (
    cluster     TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    in_recovery INTEGER NOT NULL,
    timeline    INTEGER,
    PRIMARY KEY (cluster, node)
);
CREATE TABLE IF NOT EXISTS alert_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id    INTEGER NOT NULL,
    thread_id  INTEGER,
    html       TEXT    NOT NULL,
    buttons    TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at    REAL,
    message_id INTEGER
);
CREATE INDEX IF NOT EXISTS alert_outbox_pending ON alert_outbox (chat_id, id)
    WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS alert_chat_moves (
    old_chat_id INTEGER PRIMARY KEY,
    new_chat_id INTEGER NOT NULL,
    moved_at    REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_chat_refusals (
    chat_id INTEGER PRIMARY KEY,
    reason  TEXT    NOT NULL,
    since   REAL    NOT NULL
);
"""

_ALERT_COLUMNS = (
    "id, cluster, node, rule, subject, severity, figures, state, first_seen, fired_at, "
    "announced_at, last_sent_at, resolved_at, acked_by, acked_at, muted_until, repeat"
)
_OUTBOX_COLUMNS = "id, chat_id, thread_id, html, buttons, created_at, attempts, chart"
_MUTE_COLUMNS = "id, cluster, node, until, by, created_at"


class OutboxRow(NamedTuple):
    """One outbox row as :meth:`SqliteAlertStore.outbox_rows` lists it (tests, benchmarks)."""

    id: int
    chat_id: int
    state: str
    html: str
    attempts: int


class _Transaction:
    """The AlertTransaction port on the store's open transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def insert_alert(self, alert: Alert) -> Alert:
        cursor = await self._db.execute(
            "INSERT INTO alerts (cluster, node, rule, subject, severity, figures, state, "
            "first_seen, fired_at, announced_at, last_sent_at, resolved_at, acked_by, acked_at, "
            "muted_until, repeat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _alert_values(alert),
        )
        assert cursor.lastrowid is not None
        return dataclasses.replace(alert, id=cursor.lastrowid)

    async def update_alert(self, alert: Alert) -> None:
        await self._db.execute(
            "UPDATE alerts SET cluster = ?, node = ?, rule = ?, subject = ?, severity = ?, "
            "figures = ?, state = ?, first_seen = ?, fired_at = ?, announced_at = ?, "
            "last_sent_at = ?, resolved_at = ?, acked_by = ?, acked_at = ?, muted_until = ?, "
            "repeat = ? WHERE id = ?",
            (*_alert_values(alert), alert.id),
        )

    async def enqueue(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        """Queue ``message``; a chat that became a supergroup is queued under its new id."""
        cursor = await self._db.execute(
            "SELECT new_chat_id FROM alert_chat_moves WHERE old_chat_id = ?", (chat_id,)
        )
        moved = await cursor.fetchone()
        if moved is not None:
            chat_id = int(moved["new_chat_id"])
        buttons = [[{"label": b.label, "data": b.data} for b in row] for row in message.buttons]
        cursor = await self._db.execute(
            "INSERT INTO alert_outbox (chat_id, thread_id, html, buttons, created_at, chart) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                chat_id,
                thread_id,
                message.html,
                json.dumps(buttons),
                time.time(),
                _chart_text(message.chart),
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def set_facts(self, cluster: str, node: str, facts: NodeFacts) -> None:
        await self._db.execute(
            "INSERT INTO node_facts (cluster, node, in_recovery, timeline) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (cluster, node) DO UPDATE SET in_recovery = excluded.in_recovery, "
            "timeline = excluded.timeline",
            (cluster, node, int(facts.in_recovery), facts.timeline),
        )


class SqliteAlertStore:
    """The AlertStore and Outbox ports on one SQLite file; call :meth:`open` first."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the file and tables if needed."""
        self._db = await open_database(self._path, _SCHEMA, "alert store")

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise AuditError(Phrase.of("error.store.not_open", store="alerts"))
        return self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        """BEGIN IMMEDIATE … COMMIT; ROLLBACK if the block raises."""
        async with self._lock:
            db = self._conn
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield _Transaction(db)
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            return list(await cursor.fetchall())  # sqlite3.Row: by column name

    async def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            return cursor.rowcount

    # --- AlertStore ----------------------------------------------------------------------

    async def firing(self) -> list[Alert]:
        rows = await self._rows(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE state = ? ORDER BY id",  # noqa: S608
            (AlertState.FIRING.value,),
        )
        return [_alert(row) for row in rows]

    async def get(self, alert_id: int) -> Alert | None:
        rows = await self._rows(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?",  # noqa: S608
            (alert_id,),
        )
        return _alert(rows[0]) if rows else None

    async def history(self, limit: int) -> list[Alert]:
        """The newest ``limit`` alerts of any state, newest first."""
        rows = await self._rows(
            f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY id DESC LIMIT ?",  # noqa: S608
            (limit,),
        )
        return [_alert(row) for row in rows]

    async def facts(self) -> dict[tuple[str, str], NodeFacts]:
        rows = await self._rows("SELECT cluster, node, in_recovery, timeline FROM node_facts")
        return {
            (str(row["cluster"]), str(row["node"])): NodeFacts(
                bool(row["in_recovery"]), None if row["timeline"] is None else int(row["timeline"])
            )
            for row in rows
        }

    async def mutes(self, now: float) -> list[Mute]:
        rows = await self._rows(
            f"SELECT {_MUTE_COLUMNS} FROM alert_mutes "  # noqa: S608
            "WHERE ended_at IS NULL AND until > ? ORDER BY id",
            (now,),
        )
        return [_mute(row) for row in rows]

    async def add_mute(
        self, cluster: str, node: str | None, until: float, by: str, now: float
    ) -> Mute:
        async with self._lock:
            cursor = await self._conn.execute(
                "INSERT INTO alert_mutes (cluster, node, until, by, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (cluster, node, until, by, now),
            )
            assert cursor.lastrowid is not None
            return Mute(cursor.lastrowid, cluster, node, until, by, now)

    async def remove_mutes(self, cluster: str, node: str | None, now: float) -> int:
        if node is None:
            return await self._write(
                "UPDATE alert_mutes SET ended_at = ? WHERE cluster = ? AND ended_at IS NULL "
                "AND until > ?",
                (now, cluster, now),
            )
        return await self._write(
            "UPDATE alert_mutes SET ended_at = ? WHERE cluster = ? AND node = ? "
            "AND ended_at IS NULL AND until > ?",
            (now, cluster, node, now),
        )

    # --- Outbox --------------------------------------------------------------------------

    async def pending_chats(self) -> list[int]:
        rows = await self._rows(
            "SELECT DISTINCT chat_id FROM alert_outbox WHERE state = 'pending' ORDER BY chat_id"
        )
        return [int(row["chat_id"]) for row in rows]

    async def next_pending(self, chat_id: int) -> OutboxItem | None:
        rows = await self._rows(
            f"SELECT {_OUTBOX_COLUMNS} FROM alert_outbox "  # noqa: S608
            "WHERE chat_id = ? AND state = 'pending' ORDER BY id LIMIT 1",
            (chat_id,),
        )
        return _outbox_item(rows[0]) if rows else None

    async def mark_sent(self, item_id: int, message_id: int, at: float) -> None:
        await self._write(
            "UPDATE alert_outbox SET state = 'sent', sent_at = ?, message_id = ?, "
            "attempts = attempts + 1 WHERE id = ? AND state = 'pending'",
            (at, message_id, item_id),
        )

    async def record_failure(self, item_id: int, error: str, final: bool) -> None:
        await self._write(
            "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, "
            "state = CASE WHEN ? THEN 'failed' ELSE state END WHERE id = ? AND state = 'pending'",
            (error[:500], int(final), item_id),
        )

    async def move_chat(self, old_chat_id: int, new_chat_id: int, at: float) -> int:
        """Record that ``old_chat_id`` is now ``new_chat_id`` and move its unsent messages
        there (keeping their order); returns how many moved. Earlier moves to the old id
        follow along, so a chain of upgrades resolves in one step."""
        async with self.transaction():
            db = self._conn
            await db.execute(
                "INSERT INTO alert_chat_moves (old_chat_id, new_chat_id, moved_at) "
                "VALUES (?, ?, ?) ON CONFLICT (old_chat_id) DO UPDATE SET "
                "new_chat_id = excluded.new_chat_id, moved_at = excluded.moved_at",
                (old_chat_id, new_chat_id, at),
            )
            await db.execute(
                "UPDATE alert_chat_moves SET new_chat_id = ? WHERE new_chat_id = ?",
                (new_chat_id, old_chat_id),
            )
            cursor = await db.execute(
                "UPDATE alert_outbox SET chat_id = ? WHERE chat_id = ? AND state = 'pending'",
                (new_chat_id, old_chat_id),
            )
            return cursor.rowcount

    async def chat_moves(self) -> dict[int, int]:
        """Old chat id -> the supergroup id it became."""
        rows = await self._rows("SELECT old_chat_id, new_chat_id FROM alert_chat_moves")
        return {int(row["old_chat_id"]): int(row["new_chat_id"]) for row in rows}

    async def refuse(
        self,
        item_id: int,
        error: str,
        chat_id: int,
        at: float,
        requeue: Sequence[tuple[int, int | None, OutgoingMessage]],
        notices: Sequence[tuple[int, int | None, OutgoingMessage]],
    ) -> bool:
        """Give message ``item_id`` up because ``chat_id`` refuses the bot, queue ``requeue``
        (the fallback copy) and, only if the chat was not known to refuse yet, ``notices``
        — all in one transaction. True when the chat is newly refusing."""
        async with self.transaction() as tx:
            db = self._conn
            await db.execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, "
                "state = 'failed' WHERE id = ? AND state = 'pending'",
                (error[:500], item_id),
            )
            cursor = await db.execute(
                "INSERT INTO alert_chat_refusals (chat_id, reason, since) VALUES (?, ?, ?) "
                "ON CONFLICT (chat_id) DO NOTHING",
                (chat_id, error[:500], at),
            )
            newly = cursor.rowcount == 1
            for target, thread, message in [*requeue, *(notices if newly else ())]:
                await tx.enqueue(target, thread, message)
            return newly

    async def refusing_chats(self) -> dict[int, str]:
        """Chats known to refuse the bot, with the reason Telegram gave."""
        rows = await self._rows("SELECT chat_id, reason FROM alert_chat_refusals")
        return {int(row["chat_id"]): str(row["reason"]) for row in rows}

    async def clear_refusal(self, chat_id: int) -> bool:
        """The chat accepted a message again; True if it was listed as refusing."""
        return (
            await self._write("DELETE FROM alert_chat_refusals WHERE chat_id = ?", (chat_id,))
        ) > 0

    async def pending_count(self) -> int:
        rows = await self._rows(
            "SELECT count(*) AS pending FROM alert_outbox WHERE state = 'pending'"
        )
        return int(rows[0]["pending"])

    async def prune_history(self, before: float) -> tuple[int, int]:
        """Delete outbox rows delivered before ``before`` (epoch seconds) and alerts resolved
        before it; (messages, alerts) deleted. Pending and failed messages, firing alerts and
        everything in the audit log stay."""
        async with self._lock:
            db = self._conn
            await db.execute("BEGIN IMMEDIATE")
            try:
                sent = await db.execute(
                    "DELETE FROM alert_outbox WHERE state = 'sent' AND sent_at < ?", (before,)
                )
                resolved = await db.execute(
                    "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?", (before,)
                )
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
            return sent.rowcount, resolved.rowcount

    async def oldest_pending_at(self) -> float | None:
        """Wall-clock time the oldest pending outbox message was queued, or None."""
        rows = await self._rows(
            "SELECT min(created_at) AS oldest FROM alert_outbox WHERE state = 'pending'"
        )
        oldest = rows[0]["oldest"]
        return None if oldest is None else float(oldest)

    async def outbox_rows(self) -> list[OutboxRow]:
        """(id, chat_id, state, html, attempts) of every outbox row, oldest first."""
        rows = await self._rows(
            "SELECT id, chat_id, state, html, attempts FROM alert_outbox ORDER BY id"
        )
        return [
            OutboxRow(
                id=int(row["id"]),
                chat_id=int(row["chat_id"]),
                state=str(row["state"]),
                html=str(row["html"]),
                attempts=int(row["attempts"]),
            )
            for row in rows
        ]


def _alert_values(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.cluster,
        alert.node,
        alert.rule.value,
        alert.subject,
        alert.severity.value,
        json.dumps(alert.figures, sort_keys=True),
        alert.state.value,
        alert.first_seen,
        alert.fired_at,
        alert.announced_at,
        alert.last_sent_at,
        alert.resolved_at,
        alert.acked_by,
        alert.acked_at,
        alert.muted_until,
        int(alert.repeat),
    )


def _alert(row: sqlite3.Row) -> Alert:
    """An alert from a row of ``_ALERT_COLUMNS``."""
    return Alert(
        id=int(row["id"]),
        cluster=str(row["cluster"]),
        node=str(row["node"]),
        rule=AlertRule(str(row["rule"])),
        subject=str(row["subject"]),
        severity=Severity(str(row["severity"])),
        figures=json.loads(str(row["figures"])),
        state=AlertState(str(row["state"])),
        first_seen=float(row["first_seen"]),
        fired_at=float(row["fired_at"]),
        announced_at=row["announced_at"],
        last_sent_at=row["last_sent_at"],
        resolved_at=row["resolved_at"],
        acked_by=row["acked_by"],
        acked_at=row["acked_at"],
        muted_until=row["muted_until"],
        repeat=bool(row["repeat"]),
    )


def _mute(row: sqlite3.Row) -> Mute:
    """A mute from a row of ``_MUTE_COLUMNS``."""
    return Mute(
        id=int(row["id"]),
        cluster=str(row["cluster"]),
        node=row["node"],
        until=float(row["until"]),
        by=str(row["by"]),
        created_at=float(row["created_at"]),
    )


def _outbox_item(row: sqlite3.Row) -> OutboxItem:
    """An outbox message from a row of ``_OUTBOX_COLUMNS``."""
    buttons = tuple(
        tuple(MessageButton(str(b["label"]), str(b["data"])) for b in line)
        for line in json.loads(str(row["buttons"]))
    )
    return OutboxItem(
        id=int(row["id"]),
        chat_id=int(row["chat_id"]),
        thread_id=row["thread_id"],
        message=OutgoingMessage(str(row["html"]), buttons, _chart_ref(str(row["chart"] or ""))),
        created_at=float(row["created_at"]),
        attempts=int(row["attempts"]),
    )


def _chart_text(chart: ChartRef | None) -> str:
    """The outbox's ``chart`` column: '' or the chart to attach, as JSON."""
    if chart is None:
        return ""
    return json.dumps({"cluster": chart.cluster, "node": chart.node, "window_s": chart.window_s})


def _chart_ref(text: str) -> ChartRef | None:
    if not text:
        return None
    data = json.loads(text)
    node = data.get("node")
    return ChartRef(
        str(data["cluster"]),
        None if node is None else str(node),
        float(data.get("window_s", 6 * 3600.0)),
    )
