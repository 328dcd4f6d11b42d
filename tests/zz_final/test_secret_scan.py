"""Runs last (by path): no secret the suite created ever left the bot.

Scans everything recorded in ``tests.conftest.LEDGER`` by the tests before it: every call of
every fake Bot API (parameters and responses), every log line, every audit database (raw bytes,
with its ``-wal`` file), and texts such as CLI output, for every secret (database passwords of
each replication set, the fake bot token). Run alone it has nothing to scan and fails on
purpose: run it as part of the whole suite.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import LEDGER

pytestmark = pytest.mark.integration

RUN_WHOLE_SUITE = (
    "the secret scan saw too little to prove anything; run it as part of the whole suite "
    "(pytest tests), not alone"
)


def _audit_row_count(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM audit").fetchone()[0])
    finally:
        db.close()


def test_no_secret_reaches_telegram_logs_or_the_audit_log() -> None:
    secrets = sorted(s for s in LEDGER.secrets if s)
    calls = [c for api in LEDGER.fake_apis for c in api.calls]
    audit_files = [p for p in LEDGER.audit_paths if p.exists()]
    audit_rows = sum(_audit_row_count(p) for p in audit_files)

    assert len(secrets) >= 3, f"{RUN_WHOLE_SUITE} ({len(secrets)} secrets recorded)"
    assert len(calls) > 20, f"{RUN_WHOLE_SUITE} ({len(calls)} fake Bot API calls recorded)"
    assert sum(1 for c in calls if c.method == "sendMessage") > 10, RUN_WHOLE_SUITE
    assert audit_rows > 0, f"{RUN_WHOLE_SUITE} ({len(audit_files)} audit files, no rows)"
    assert len(LEDGER.log_lines) > 0, f"{RUN_WHOLE_SUITE} (no log lines captured)"
    missing = [str(p) for p in LEDGER.audit_paths if not p.exists()]
    assert missing == [], f"audit files recorded by tests are gone: {missing}"

    material: list[tuple[str, str]] = []
    for index, api in enumerate(LEDGER.fake_apis):
        for n, call in enumerate(api.calls):
            where = f"fake API #{index} call {n} ({call.method})"
            material.append((where + " params", _as_text(call.params)))
            material.append((where + " response", _as_text(call.response)))
    material += [(f"log line {n}", line) for n, line in enumerate(LEDGER.log_lines)]
    material += [(f"recorded text {n}", text) for n, text in enumerate(LEDGER.texts)]
    raw: list[tuple[str, bytes]] = []
    for path in audit_files:
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                raw.append((str(file), file.read_bytes()))

    hits = [
        f"{where}: contains secret #{secrets.index(secret)}"
        for where, text in material
        for secret in secrets
        if secret in text
    ]
    hits += [
        f"{where}: contains secret #{secrets.index(secret)}"
        for where, data in raw
        for secret in secrets
        if secret.encode() in data
    ]
    assert hits == [], "secrets leaked:\n" + "\n".join(hits[:50])


def _as_text(value: object) -> str:
    """JSON of a recorded call; uploaded files (sendPhoto's PNG) are scanned as latin-1 text."""
    return json.dumps(
        value,
        ensure_ascii=False,
        default=lambda o: o.decode("latin-1") if isinstance(o, bytes) else str(o),
    )
