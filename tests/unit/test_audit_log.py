"""SqliteAuditLog on a real SQLite file: order, hash chain, tamper detection, redaction."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.audit_sqlite import SqliteAuditLog
from bot.cli import main
from bot.models import AuditRecord, Outcome
from bot.redact import Redactor

SECRET = "audit-secret-pw-9876"


def record(n: int, **overrides: object) -> AuditRecord:
    values: dict[str, object] = {
        "user_id": 1001,
        "user_name": "alice",
        "chat_id": 1001,
        "command": "status",
        "args": f"main {n}",
        "outcome": Outcome.OK,
        "reason": "",
        "duration_ms": n,
    }
    values.update(overrides)
    return AuditRecord(**values)  # type: ignore[arg-type]


async def write_rows(path: Path, count: int) -> None:
    log = SqliteAuditLog(path)
    await log.open()
    try:
        for n in range(1, count + 1):
            await log.append(record(n))
    finally:
        await log.close()


async def verify(path: Path) -> tuple[bool, int | None, str | None]:
    log = SqliteAuditLog(path)
    await log.open()
    try:
        result = await log.verify()
    finally:
        await log.close()
    return result.ok, result.first_bad_id, result.problem


def tamper(path: Path, *statements: str) -> None:
    """Edit the file behind the bot's back, as someone with shell access could."""
    with sqlite3.connect(path, isolation_level=None) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


DROP_TRIGGERS = ("DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete")


@pytest.fixture
async def audit_log(tmp_path: Path) -> AsyncIterator[SqliteAuditLog]:
    log = SqliteAuditLog(tmp_path / "audit.sqlite3")
    await log.open()
    try:
        yield log
    finally:
        await log.close()


async def test_recent_returns_newest_first_limited(audit_log: SqliteAuditLog) -> None:
    for n in range(1, 6):
        await audit_log.append(record(n))

    entries = await audit_log.recent(3)

    assert [e.id for e in entries] == [5, 4, 3]
    assert [e.args for e in entries] == ["main 5", "main 4", "main 3"]
    assert entries[0].outcome is Outcome.OK
    assert entries[0].user_name == "alice"
    assert entries[0].duration_ms == 5


async def test_concurrent_appends_keep_one_unbroken_chain(audit_log: SqliteAuditLog) -> None:
    await asyncio.gather(*(audit_log.append(record(n)) for n in range(1, 21)))

    result = await audit_log.verify()

    assert result.ok
    assert result.rows == 20


async def test_verify_reports_ok_on_an_intact_chain(audit_log: SqliteAuditLog) -> None:
    for n in range(1, 4):
        await audit_log.append(record(n))

    result = await audit_log.verify()

    assert result.ok
    assert result.rows == 3
    assert result.first_bad_id is None


async def test_update_refused_by_sqlite_while_triggers_are_in_place(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 3)

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        tamper(path, "UPDATE audit SET outcome = 'ok' WHERE id = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        tamper(path, "DELETE FROM audit WHERE id = 2")

    assert await verify(path) == (True, None, None)


async def test_verify_names_the_row_edited_around_the_triggers(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 5)

    tamper(path, *DROP_TRIGGERS, "UPDATE audit SET args = 'main innocent' WHERE id = 3")

    ok, first_bad_id, problem = await verify(path)
    assert not ok
    assert first_bad_id == 3
    assert problem == "row content was changed"


async def test_verify_detects_a_deleted_middle_row(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 5)

    tamper(path, *DROP_TRIGGERS, "DELETE FROM audit WHERE id = 2")

    ok, first_bad_id, problem = await verify(path)
    assert not ok
    assert first_bad_id == 3  # the first row present after the gap
    assert problem == "row 2 is missing"


async def test_verify_detects_a_rehashed_row_by_its_broken_successor(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 4)
    tamper(path, *DROP_TRIGGERS, "UPDATE audit SET args = 'x' WHERE id = 2")
    # a careful forger also recomputes the edited row's own hash ...
    from bot.adapters.audit_sqlite import row_hash

    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT id, at, user_id, user_name, chat_id, command, args, outcome, reason, "
            "duration_ms, prev_hash FROM audit WHERE id = 2"
        ).fetchone()
        db.execute("UPDATE audit SET hash = ? WHERE id = 2", (row_hash(row[10], tuple(row[:10])),))
    db.close()

    ok, first_bad_id, problem = await verify(path)
    assert not ok
    assert first_bad_id == 3  # ... but row 3 still links to the old hash
    assert problem == "link to previous row broken"


def test_cli_audit_verify_exits_0_on_an_intact_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.sqlite3"
    asyncio.run(write_rows(path, 3))

    code = main(["audit", "verify", "--db", str(path)])

    assert code == 0
    assert "hash chain intact" in capsys.readouterr().out


def test_cli_audit_verify_exits_2_on_a_tampered_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.sqlite3"
    asyncio.run(write_rows(path, 3))
    tamper(path, *DROP_TRIGGERS, "UPDATE audit SET user_name = 'mallory' WHERE id = 2")

    code = main(["audit", "verify", "--db", str(path)])

    assert code == 2
    assert "TAMPERED at row 2" in capsys.readouterr().out


def test_cli_audit_verify_exits_1_when_there_is_no_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "verify", "--db", str(tmp_path / "missing.sqlite3")])

    assert code == 1
    assert "no audit log" in capsys.readouterr().err


async def test_secrets_known_to_the_redactor_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    log = SqliteAuditLog(path, redact=Redactor([SECRET]))
    await log.open()
    try:
        await log.append(
            record(
                1,
                user_name=f"eve {SECRET}",
                command=f"status{SECRET}",
                args=f"main {SECRET} postgresql://bot:uri-pass-123@db1/x",
                reason=f"failed: password={SECRET}",
            )
        )
        entries = await log.recent(1)
        assert (await log.verify()).ok
    finally:
        await log.close()

    entry = entries[0]
    for text in (entry.user_name, entry.command, entry.args, entry.reason):
        assert SECRET not in text
    assert "uri-pass-123" not in entry.args
    with sqlite3.connect(path) as db:
        dump = "\n".join(db.iterdump())
    db.close()
    assert SECRET not in dump
    assert "uri-pass-123" not in dump
    for file in tmp_path.iterdir():
        assert SECRET.encode() not in file.read_bytes(), file.name
