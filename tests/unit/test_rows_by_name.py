"""The stores read query rows by column name (``sqlite3.Row``, ``psycopg.rows.class_row``),
never by position: a column added, removed or reordered in a SELECT cannot shift a value into
the wrong field. Checked three ways: statically (no ``row[3]`` in bot/adapters), by mapping
rows whose columns were selected in another order, and on an audit log written before the
change (its hash chain still verifies: the chain's column order is fixed in code)."""

from __future__ import annotations

import ast
import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest

from bot.adapters import alerts_sqlite, audit_sqlite, jobs_sqlite, monitor_pg, postgres
from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.adapters.audit_sqlite import SqliteAuditLog
from bot.adapters.jobs_sqlite import SqliteJobStore
from bot.config import Secret
from bot.models import (
    Alert,
    AlertRule,
    AlertState,
    AuditHead,
    AuditRecord,
    MessageButton,
    Outcome,
    OutgoingMessage,
    Severity,
)

ADAPTERS = Path(__file__).resolve().parents[2] / "bot" / "adapters"
FIXTURE = Path(__file__).resolve().parent / "data" / "audit_before_rows_by_name.sql"
FIXTURE_KEY = "fixture-key-of-the-audit-chain-before-rows-by-name"
FIXTURE_HEAD = AuditHead(4, "07178dd792a0844a4bcc4644a19037dfa962d9a904700cda66e5052539af1f2b")


# --- static: no positional access to query rows in bot/adapters ------------------------------


def _rowish(name: str) -> bool:
    """A name that holds one row (``row``, ``last_row``) — not a list of them (``rows``)."""
    lowered = name.lower()
    return "row" in lowered and not lowered.endswith("rows")


def _mentions_rows(node: ast.AST) -> bool:
    """``node`` reads query rows: a name containing 'row', or a ``fetchall``/``fetchone`` call."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and "row" in sub.id.lower():
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in {"fetchall", "fetchone", "fetchmany"}:
            return True
    return False


def _int_index(node: ast.AST) -> bool:
    """``node`` is a subscript's index by position: ``3``, ``-1`` or a slice with int bounds."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _int_index(node.operand)
    if isinstance(node, ast.Slice):
        return any(b is not None and _int_index(b) for b in (node.lower, node.upper))
    return False


def _calls(node: ast.AST, names: set[str]) -> bool:
    """``node`` contains a call of a method in ``names`` (``cursor.fetchone()``)."""
    return any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in names
        for sub in ast.walk(node)
    )


def positional_row_reads(source: str) -> list[tuple[int, str]]:
    """(line, code) of every ``row[3]``, ``rows[0][1]``, ``row[:10]``, ``last[0]`` for ``last``
    fetched with ``fetchone()``, ``r[0]`` for ``r`` taken from query rows, and tuple
    unpacking of query rows (``for a, b in rows``, ``a, b = rows[0]``)."""
    tree = ast.parse(source)
    one_row: set[str] = set()  # names bound to one query row
    many_rows: set[str] = set()  # names bound to a list of query rows
    found: list[tuple[int, str]] = []

    def single(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and (_rowish(node.id) or node.id in one_row)

    def plural(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and ("row" in node.id.lower() or node.id in many_rows)

    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            if not _mentions_rows(node.iter):
                continue
            if isinstance(node.target, ast.Name):
                one_row.add(node.target.id)
            elif isinstance(node.target, ast.Tuple):
                found.append(
                    (node.target.lineno, f"{ast.unparse(node.target)} in {ast.unparse(node.iter)}")
                )
        elif isinstance(node, ast.Assign):
            value = node.value
            first_of_rows = (
                isinstance(value, ast.Subscript) and _int_index(value.slice) and plural(value.value)
            )
            for target in node.targets:
                if isinstance(target, ast.Tuple) and (
                    first_of_rows or _calls(value, {"fetchone"}) or single(value)
                ):
                    found.append((node.lineno, ast.unparse(node)))
                elif isinstance(target, ast.Name):
                    if first_of_rows or _calls(value, {"fetchone"}):
                        one_row.add(target.id)
                    elif _calls(value, {"fetchall", "fetchmany"}):
                        many_rows.add(target.id)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Subscript) or not _int_index(node.slice):
            continue
        inner = node.value
        if single(inner) or (
            isinstance(inner, ast.Subscript) and _int_index(inner.slice) and plural(inner.value)
        ):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(set(found))


def test_the_check_catches_each_positional_pattern() -> None:
    """The check itself can fail: each pattern it exists for is reported, names are not."""
    bad = """
row = await cursor.fetchone()
a = row[0]
b = rows[0][1]
c = row[:10]
d = [int(r[2]) for r in rows]
for x, y in await cursor.fetchall():
    pass
e, f = rows[0]
last = await cursor.fetchone()
g = last[1]
"""
    assert [line for line, _ in positional_row_reads(bad)] == [3, 4, 5, 6, 7, 9, 11]
    good = """
row = await cursor.fetchone()
a = row["id"]
first = rows[0]
g = [int(r["slot"]) for r in rows]
h = [b.label for b in line[0]]
"""
    assert positional_row_reads(good) == []


@pytest.mark.parametrize("module", sorted(p.name for p in ADAPTERS.glob("*.py")))
def test_adapters_read_query_rows_by_column_name(module: str) -> None:
    offenders = positional_row_reads((ADAPTERS / module).read_text(encoding="utf-8"))
    assert offenders == [], f"bot/adapters/{module} reads rows by position: {offenders}"


# --- rows whose columns come in another order map to the same objects ----------------------


def _reversed_select(columns: str, table: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    return f"SELECT {', '.join(reversed(names))} FROM {table}"


def _read(path: Path, sql: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute(sql))
    finally:
        db.close()


async def test_a_job_row_with_its_columns_reordered_maps_to_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteJobStore(path)
    await store.open()
    try:
        job = await store.create("main", "pg2", 1001, 1002, "/old", "/failed", "rb_pg2", "repair")
        job = await store.update(job.id, step="basebackup", detail="42 %", moved_id="m-1")
    finally:
        await store.close()
    (row,) = _read(path, _reversed_select(jobs_sqlite._COLUMNS, "rebuild_jobs"))
    assert jobs_sqlite._job(row) == job
    assert (job.kind, job.moved_id, job.confirmed_by) == ("repair", "m-1", 1002)


async def test_alert_and_outbox_rows_with_their_columns_reordered_map_the_same(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteAlertStore(path)
    await store.open()
    try:
        alert = Alert(
            id=0,
            cluster="main",
            node="pg2",
            rule=AlertRule.BYTE_LAG,
            subject="pg2",
            severity=Severity.WARNING,
            figures={"lag_bytes": 5_000_000},
            state=AlertState.FIRING,
            first_seen=1.0,
            fired_at=2.0,
            announced_at=3.0,
            acked_by="alice",
            acked_at=4.0,
            muted_until=5.0,
            repeat=True,
        )
        message = OutgoingMessage("<b>lag</b>", ((MessageButton("Ack", "ack:1"),),))
        async with store.transaction() as tx:
            alert = await tx.insert_alert(alert)
            await tx.enqueue(-100123, 7, message)
        await store.add_mute("main", None, 99.0, "bob", 10.0)
        (stored,) = await store.firing()
        item = await store.next_pending(-100123)
        (mute,) = await store.mutes(now=20.0)
    finally:
        await store.close()
    assert stored == alert
    (row,) = _read(path, _reversed_select(alerts_sqlite._ALERT_COLUMNS, "alerts"))
    assert alerts_sqlite._alert(row) == alert
    (row,) = _read(path, _reversed_select(alerts_sqlite._OUTBOX_COLUMNS, "alert_outbox"))
    assert item is not None and alerts_sqlite._outbox_item(row) == item
    assert item.message.buttons == message.buttons and item.thread_id == 7
    (row,) = _read(path, _reversed_select(alerts_sqlite._MUTE_COLUMNS, "alert_mutes"))
    assert alerts_sqlite._mute(row) == mute


# --- an audit log written before the change still verifies ---------------------------------


def _fixture_log(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(FIXTURE.read_text(encoding="utf-8"))
    finally:
        db.close()


async def test_an_audit_log_written_before_rows_by_name_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    _fixture_log(path)
    log = SqliteAuditLog(path, Secret(FIXTURE_KEY))
    await log.open()
    try:
        assert await log.head() == FIXTURE_HEAD
        result = await log.verify(expect_head=FIXTURE_HEAD)
        assert (result.ok, result.rows, result.unkeyed_rows) == (True, 4, 0)
        newest = (await log.recent(1))[0]
        assert (newest.id, newest.command, newest.args, newest.outcome, newest.duration_ms) == (
            4,
            "rebuild",
            "main pg2",
            Outcome.INTENT,
            7,
        )
        odd = (await log.recent(4))[2]  # NULL ids, an empty name
        assert (odd.user_id, odd.chat_id, odd.user_name, odd.outcome) == (
            None,
            None,
            "",
            Outcome.REFUSED,
        )
        exported = [row async for row in log.export_rows()]
        assert [r["hash"] for r in exported][-1] == FIXTURE_HEAD.hash
        assert exported[2]["user_name"] == 'Фёдор "ops"'
        await log.append(AuditRecord(1001, "alice", 1001, "status", "main", Outcome.OK))
        result = await log.verify(expect_head=FIXTURE_HEAD)
        assert (result.ok, result.rows) == (True, 5)
    finally:
        await log.close()


async def test_an_edited_row_of_the_old_log_is_still_caught(tmp_path: Path) -> None:
    """The fixture verifying is not the check waving everything through."""
    path = tmp_path / "audit.sqlite3"
    _fixture_log(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(
            "DROP TRIGGER IF EXISTS audit_no_update;UPDATE audit SET duration_ms = 13 WHERE id = 1;"
        )
    finally:
        db.close()
    log = SqliteAuditLog(path, Secret(FIXTURE_KEY))
    await log.open()
    try:
        result = await log.verify()
    finally:
        await log.close()
    assert (result.ok, result.first_bad_id, result.problem) == (False, 1, audit_sqlite.CHANGED)


# --- psycopg: every statement read by class_row names each field of its dataclass -----------


def _top_level_aliases(sql: str) -> list[str]:
    """The ``AS name`` aliases of the outermost select list (not those inside subqueries)."""
    text = re.sub(r"'[^']*'", "''", sql)  # no parentheses or AS inside string literals
    depth_at = []
    depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        depth_at.append(depth)
    return [m.group(1) for m in re.finditer(r"\bAS (\w+)", text) if depth_at[m.start()] == 0]


@pytest.mark.parametrize("version", [140013, 150008, 170002, 180000])
@pytest.mark.parametrize("waldir", [False, True])
def test_the_probe_statement_names_every_column_of_its_row(version: int, waldir: bool) -> None:
    """class_row(PollRow) maps by name: each server version's statement names each field once
    (PostgreSQL 14 is not in the integration matrix, so this is its only check)."""
    aliases = _top_level_aliases(monitor_pg.poll_sql(version, waldir=waldir))
    assert aliases == [field.name for field in dataclasses.fields(monitor_pg.PollRow)]


@pytest.mark.parametrize("sql", [postgres._PRIVILEGES_SQL, postgres._PRIVILEGES_14_SQL])
def test_both_privilege_statements_name_the_columns_of_their_row(sql: str) -> None:
    assert _top_level_aliases(sql) == [f.name for f in dataclasses.fields(postgres._Privileges)]


def test_the_usage_statement_names_the_columns_of_its_row() -> None:
    assert _top_level_aliases(postgres._USAGE_SQL) == [
        f.name for f in dataclasses.fields(postgres._Usage)
    ]
