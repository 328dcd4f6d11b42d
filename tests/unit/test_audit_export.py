"""``replbot audit export``: every audit row to stdout (JSON lines or CSV) for archiving,
with the chain's verification status on stderr and in the exit code."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import AUDIT_KEY_ENV
from tests.unit.test_audit_log import DROP_TRIGGERS, KEY, tamper, write_rows

FIELDS = [
    "id", "at", "user_id", "user_name", "chat_id", "command", "args", "outcome", "reason",
    "duration_ms", "prev_hash", "hash",
]  # fmt: skip


@pytest.fixture
def log_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(AUDIT_KEY_ENV, KEY)
    path = tmp_path / "audit.sqlite3"
    asyncio.run(write_rows(path, 3))
    return path


def test_export_writes_every_row_as_one_json_object_per_line_and_says_the_chain_is_intact(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "export", "--db", str(log_path)])

    out, err = capsys.readouterr()
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert list(rows[0]) == FIELDS
    assert rows[0]["args"] == "main 1" and rows[0]["outcome"] == "ok"
    assert rows[1]["prev_hash"] == rows[0]["hash"]  # an archive that can be re-verified
    assert err.startswith("audit log ok: 3 rows, hash chain intact")
    assert KEY not in out + err


def test_export_since_keeps_rows_at_or_after_the_time_and_csv_has_a_header(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = sqlite3.connect(log_path)
    try:
        second_at = str(db.execute("SELECT at FROM audit WHERE id = 2").fetchone()[0])
    finally:
        db.close()
    since = datetime.fromisoformat(second_at).strftime("%Y-%m-%dT%H:%M:%S.%f")  # naive: UTC

    code = main(["audit", "export", "--db", str(log_path), "--since", since, "--format", "csv"])

    out, _ = capsys.readouterr()
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert [row["id"] for row in table] == ["2", "3"]
    assert list(table[0]) == FIELDS


def test_export_of_a_tampered_log_still_writes_every_row_and_exits_3(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(log_path, *DROP_TRIGGERS, "UPDATE audit SET args = 'x' WHERE id = 2")

    code = main(["audit", "export", "--db", str(log_path)])

    out, err = capsys.readouterr()
    assert code == 3
    assert len(out.splitlines()) == 3  # nothing is withheld from the archive
    assert "audit log TAMPERED at row 2" in err


def test_export_refuses_a_since_that_is_not_a_time(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["audit", "export", "--db", str(log_path), "--since", "yesterday"])

    assert caught.value.code == 2
    assert "ISO 8601" in capsys.readouterr().err
