"""SqliteAuditLog on a real SQLite file: order, keyed hash chain, anchors, tamper detection,
redaction, the audit key's sources, rows from releases before the key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.audit_sqlite import (
    GENESIS,
    SqliteAuditLog,
    default_key_path,
    resolve_audit_key,
    row_hash,
)
from bot.cli import describe_config, main
from bot.config import AUDIT_KEY_ENV, AppConfig, AuditConfig, Secret, parse_config
from bot.errors import ConfigError
from bot.models import AuditHead, AuditRecord, Outcome
from bot.redact import Redactor
from handlers.render import audit_verification

SECRET = "audit-secret-pw-9876"
KEY = "k3y-of-the-audit-chain-0123456789abcdef"  # 39 characters
ROW_COLUMNS = "id, at, user_id, user_name, chat_id, command, args, outcome, reason, duration_ms"


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


def keyed_log(path: Path, key: str = KEY, **kwargs: Any) -> SqliteAuditLog:
    return SqliteAuditLog(path, Secret(key), **kwargs)


async def write_rows(path: Path, count: int, key: str = KEY) -> AuditHead:
    """Append ``count`` rows; return the head an operator would have noted (the anchor)."""
    log = keyed_log(path, key)
    await log.open()
    try:
        for n in range(1, count + 1):
            await log.append(record(n))
        return await log.head()
    finally:
        await log.close()


async def verify(
    path: Path, expect_head: AuditHead | None = None, key: str | None = KEY
) -> tuple[bool, int | None, str | None]:
    log = SqliteAuditLog(path, Secret(key) if key else None)
    await log.open()
    try:
        result = await log.verify(expect_head=expect_head)
    finally:
        await log.close()
    return result.ok, result.first_bad_id, result.problem


def rehash_from(path: Path, first_id: int, digest: Callable[[str, tuple[Any, ...]], str]) -> None:
    """An attacker who knows the algorithm but not the key re-chains rows first_id.. onwards."""
    with sqlite3.connect(path, isolation_level=None) as db:
        rows = db.execute(f"SELECT {ROW_COLUMNS}, prev_hash FROM audit ORDER BY id").fetchall()
        prev = GENESIS
        for row in rows:
            if row[0] >= first_id:
                new = digest(prev, tuple(row[:10]))
                db.execute(
                    "UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, new, row[0])
                )
                prev = new
            else:
                prev = db.execute("SELECT hash FROM audit WHERE id = ?", (row[0],)).fetchone()[0]
    db.close()


def minimal_config(audit: dict[str, str], environ: dict[str, str]) -> AppConfig:
    data = {
        "audit": audit,
        "users": [{"id": 1, "name": "a", "role": "admin"}],
        "clusters": [
            {"name": "main", "nodes": [{"name": "pg1", "role": "primary", "dsn": "host=127.0.0.1"}]}
        ],
    }
    return parse_config(data, environ)


def plain_sha256(prev: str, fields: tuple[Any, ...]) -> str:
    return row_hash(prev, fields)


def hmac_with_a_guessed_key(prev: str, fields: tuple[Any, ...]) -> str:
    payload = json.dumps([prev, *fields], separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(b"guessed-key-" * 4, payload, hashlib.sha256).hexdigest()


def tamper(path: Path, *statements: str) -> None:
    """Edit the file behind the bot's back, as someone with shell access could."""
    with sqlite3.connect(path, isolation_level=None) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


DROP_TRIGGERS = ("DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete")


@pytest.fixture
async def audit_log(tmp_path: Path) -> AsyncIterator[SqliteAuditLog]:
    log = keyed_log(tmp_path / "audit.sqlite3")
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
    assert problem == "row content was changed (or the key is not the one that wrote it)"


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
    # a careful forger also recomputes the edited row's own hash (with the right key) ...
    with sqlite3.connect(path) as db:
        row = db.execute(f"SELECT {ROW_COLUMNS}, prev_hash FROM audit WHERE id = 2").fetchone()
        payload = json.dumps([row[10], *row[:10]], separators=(",", ":"), ensure_ascii=False)
        forged = hmac.new(KEY.encode(), payload.encode(), hashlib.sha256).hexdigest()
        db.execute("UPDATE audit SET hash = ? WHERE id = 2", (forged,))
    db.close()

    ok, first_bad_id, problem = await verify(path)
    assert not ok
    assert first_bad_id == 3  # ... but row 3 still links to the old hash
    assert problem == "link to previous row broken"


@pytest.mark.parametrize("forgery", [plain_sha256, hmac_with_a_guessed_key])
async def test_a_row_rewritten_and_rehashed_forward_without_the_key_fails_verify(
    tmp_path: Path, forgery: Callable[[str, tuple[Any, ...]], str]
) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 5)
    tamper(path, *DROP_TRIGGERS, "UPDATE audit SET args = 'main innocent' WHERE id = 3")
    rehash_from(path, 3, forgery)  # every link and hash is consistent again

    ok, first_bad_id, problem = await verify(path)

    assert not ok
    assert first_bad_id == 3
    assert problem is not None and "key" in problem


async def test_deleting_the_newest_rows_fails_verify_against_an_anchor_taken_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    anchor = await write_rows(path, 5)
    assert anchor.rows == 5
    tamper(path, *DROP_TRIGGERS, "DELETE FROM audit WHERE id >= 4")

    assert await verify(path) == (True, None, None)  # a shorter chain is still a chain ...
    ok, first_bad_id, problem = await verify(path, expect_head=anchor)  # ... the anchor knows

    assert not ok
    assert first_bad_id == 4
    assert problem == "the log ends at row 3, the anchor names row 5: the newest rows were deleted"


async def test_an_older_anchor_still_verifies_a_log_that_grew_since(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    anchor = await write_rows(path, 3)
    log = keyed_log(path)
    await log.open()
    try:
        await log.append(record(4))
        result = await log.verify(expect_head=anchor)
    finally:
        await log.close()

    assert result.ok
    assert result.head is not None and result.head.rows == 4


async def test_a_log_rewritten_whole_as_unkeyed_rows_fails_against_the_anchor(
    tmp_path: Path,
) -> None:
    """Rows from before the key are accepted as a prefix, so a forger could pass a rewritten
    log off as an old unkeyed one; verify then warns, and the anchor catches it."""
    path = tmp_path / "audit.sqlite3"
    anchor = await write_rows(path, 4)
    tamper(path, *DROP_TRIGGERS, "UPDATE audit SET user_name = 'mallory' WHERE id = 2")
    rehash_from(path, 1, plain_sha256)

    log = keyed_log(path)
    await log.open()
    try:
        alone = await log.verify()
        anchored = await log.verify(expect_head=anchor)
    finally:
        await log.close()

    assert alone.ok and alone.unkeyed_rows == 4
    assert "warning: rows 1-4 carry no key" in audit_verification(alone)
    assert (anchored.ok, anchored.first_bad_id, anchored.problem) == (
        False,
        4,
        "row hash differs from the anchor",
    )


async def test_rows_from_before_the_key_verify_as_an_unkeyed_prefix(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 3)
    tamper(path, *DROP_TRIGGERS)
    rehash_from(path, 1, plain_sha256)  # what the release before the key wrote
    # (opening the log below puts the triggers back)
    log = keyed_log(path)
    await log.open()
    try:
        assert (await log.verify()).unkeyed_rows == 3
        await log.append(record(4))
        await log.append(record(5))
        result = await log.verify()
    finally:
        await log.close()

    assert (result.ok, result.rows, result.unkeyed_rows) == (True, 5, 3)
    text = audit_verification(result)
    assert text.startswith(
        "audit log ok: 5 rows, hash chain intact\nwarning: rows 1-3 carry no key"
    )


async def test_an_unkeyed_row_after_keyed_ones_is_tampering(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 4)
    tamper(path, *DROP_TRIGGERS, "UPDATE audit SET outcome = 'ok' WHERE id = 4")
    rehash_from(path, 4, plain_sha256)

    assert await verify(path) == (False, 4, "row is not signed with the audit key")


async def test_verify_without_the_key_names_the_first_keyed_row_and_does_not_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    await write_rows(path, 2)

    ok, first_bad_id, problem = await verify(path, key=None)

    assert (ok, first_bad_id) == (False, 1)
    assert problem is not None and AUDIT_KEY_ENV in problem


async def test_the_head_is_logged_every_n_rows_and_at_open_and_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.sqlite3"
    caplog.set_level(logging.INFO, logger="replbot.audit")
    log = keyed_log(path, anchor_every=2)
    await log.open()
    for n in range(1, 6):
        await log.append(record(n))
    head = await log.head()
    await log.close()

    lines = [r.getMessage() for r in caplog.records if r.name == "replbot.audit"]
    assert [re.sub(r"hash=\w+", "", line) for line in lines] == [
        f"audit head: rows={n} " for n in (0, 2, 4, 5)
    ]
    assert lines[-1] == f"audit head: rows=5 hash={head.hash}"
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "replbot.audit")
    assert (await verify(path, expect_head=head)) == (True, None, None)


def test_a_key_file_readable_by_others_is_refused_naming_the_key(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY)
    key_file.chmod(0o640)
    audit = {"path": str(tmp_path / "a.sqlite3"), "key_file": str(key_file)}

    with pytest.raises(ConfigError) as refused:
        minimal_config(audit, {})
    assert refused.value.user_message.startswith("audit.key_file: ")
    assert "mode 0640" in refused.value.user_message
    assert KEY not in refused.value.user_message

    key_file.chmod(0o600)
    config = minimal_config(audit, {})
    assert config.audit.key == Secret(KEY)
    assert f"key from key file {key_file}" in describe_config(config)


def test_a_short_key_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        minimal_config({"path": "/tmp/x.sqlite3"}, {AUDIT_KEY_ENV: "short-key"})
    assert refused.value.user_message.startswith(f"{AUDIT_KEY_ENV}: audit key too short")
    assert "short-key" not in refused.value.user_message


def test_without_a_configured_key_one_is_created_beside_the_database_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = AuditConfig(path=tmp_path / "db" / "audit.sqlite3")
    caplog.set_level(logging.INFO)

    key, where = resolve_audit_key(config, create=True)
    again, _ = resolve_audit_key(config, create=True)

    key_file = default_key_path(config.path)
    assert key_file == tmp_path / "db" / "audit.sqlite3.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key == again and len(key.reveal()) == 64
    assert where == f"key file {key_file} beside the database"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "protects less than one kept elsewhere" in warnings[0]
    assert key.reveal() not in caplog.text


async def test_the_key_never_reaches_a_log_line_an_audit_row_or_check_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.sqlite3"
    caplog.set_level(logging.DEBUG)
    log = keyed_log(path, redact=Redactor([KEY]), anchor_every=1)
    await log.open()
    try:
        await log.append(record(1, args=f"pasted {KEY} by mistake", reason=KEY))
        assert (await log.verify()).ok
    finally:
        await log.close()

    assert KEY not in caplog.text
    for file in tmp_path.iterdir():
        assert KEY.encode() not in file.read_bytes(), file.name
    config = minimal_config({"path": str(path)}, {AUDIT_KEY_ENV: KEY})
    shown = describe_config(config)
    assert f"key from env {AUDIT_KEY_ENV}" in shown
    assert KEY not in shown


def test_cli_audit_verify_exits_0_on_an_intact_log_and_prints_its_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUDIT_KEY_ENV, KEY)
    path = tmp_path / "audit.sqlite3"
    head = asyncio.run(write_rows(path, 3))

    code = main(["audit", "verify", "--db", str(path)])

    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("audit log ok: 3 rows, hash chain intact\n")
    assert f"head {head} (keep it elsewhere; check with --expect-head {head})" in out
    assert KEY not in out


def test_cli_audit_verify_expect_head_fails_after_the_tail_was_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.sqlite3"
    head = asyncio.run(write_rows(path, 4))
    key_file = tmp_path / "elsewhere.key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    verify_argv = ["audit", "verify", "--db", str(path), "--key-file", str(key_file)]
    assert main([*verify_argv, "--expect-head", str(head)]) == 0
    tamper(path, *DROP_TRIGGERS, "DELETE FROM audit WHERE id = 4")
    capsys.readouterr()

    code = main([*verify_argv, "--expect-head", f"{head.rows}:{head.hash}"])

    assert code == 3
    assert capsys.readouterr().out.startswith("audit log TAMPERED at row 4: the log ends at row 3")


def test_cli_audit_verify_exits_3_on_a_tampered_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUDIT_KEY_ENV, KEY)
    path = tmp_path / "audit.sqlite3"
    asyncio.run(write_rows(path, 3))
    tamper(path, *DROP_TRIGGERS, "UPDATE audit SET user_name = 'mallory' WHERE id = 2")

    code = main(["audit", "verify", "--db", str(path)])

    assert code == 3  # 2 is argparse's usage error; 3 is "verification failed"
    assert "TAMPERED at row 2" in capsys.readouterr().out


def test_cli_audit_verify_exits_1_when_there_is_no_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "verify", "--db", str(tmp_path / "missing.sqlite3")])

    assert code == 1
    assert "no audit log" in capsys.readouterr().err


async def test_secrets_known_to_the_redactor_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    log = keyed_log(path, redact=Redactor([SECRET]))
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
