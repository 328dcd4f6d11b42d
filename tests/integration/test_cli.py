"""The ``replbot`` console script, run as a subprocess like a user would."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.adapters.audit_sqlite import default_key_path
from bot.models import Outcome
from tests.conftest import ADMIN_ID, LEDGER, VIEWER_ID, TelegramHarness, short_tmpdir
from tests.integration._helpers import audit_rows, pids_with_cmdline, plain, reply_call

pytestmark = pytest.mark.integration


def replbot_argv() -> list[str]:
    """The installed console script (next to this interpreter), else ``python -m bot``."""
    script = shutil.which("replbot", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "bot"]


def run_replbot(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*replbot_argv(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env={**os.environ, **env} if env else None,
    )
    LEDGER.texts.extend([result.stdout, result.stderr])
    return result


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_commands_against_local_servers_and_leaves_nothing_running() -> None:
    result = run_replbot("demo", "--exec", "/status", "--exec", "/slots", "--exec", "/check")
    out = result.stdout
    assert result.returncode == 0, f"rc={result.returncode}\n{out}\n{result.stderr}"
    assert re.search(r"^✅ demo: 1/1 replicas streaming$", out, re.M), out
    assert re.search(r"^✅ pg2 physical · active · .* · for pg2$", out, re.M), out
    assert re.search(r"^✅ demo prerequisites: \d+ ok, \d+ warn, 0 fail$", out, re.M), out
    assert "demo clusters stopped and removed" in out

    base = re.search(r" in (/tmp/rbdemo-\S+) …$", out, re.M)
    ports = re.search(r"^ready \((pg1:\d+, pg2:\d+)\)", out, re.M)
    assert base and ports, out
    assert pids_with_cmdline(base.group(1)) == []
    assert not Path(base.group(1)).exists()
    for entry in ports.group(1).split(", "):
        assert not port_open(int(entry.split(":")[1])), f"{entry} still accepts connections"


def test_check_config_rejects_a_bad_config_naming_the_key() -> None:
    base = short_tmpdir("rbc")
    try:
        bad = base / "bad.toml"
        bad.write_text(
            '[audit]\npath = "/tmp/unused.sqlite3"\n\n'
            '[[users]]\nid = 1\nname = "a"\nrole = "admin"\n\n'
            '[[clusters]]\nname = "main"\n\n'
            '[[clusters.nodes]]\nname = "pg1"\nrole = "primary"\ndsn = "host=127.0.0.1"\n\n'
            '[[clusters.nodes]]\nname = "pg2"\nrole = "replica"\ndsn = "host=127.0.0.2"\n'
            'slot = "Bad-Slot"\n'
        )
        result = run_replbot("check-config", "--config", str(bad))
        assert result.returncode == 2, result  # usage or config error
        assert result.stderr.startswith("config error: clusters.main.nodes.pg2.slot: 'Bad-Slot'")
        assert "config ok" not in result.stdout

        good = base / "good.toml"
        good.write_text(bad.read_text().replace("Bad-Slot", "pg2"))
        ok = run_replbot("check-config", "--config", str(good))
        assert ok.returncode == 0, ok
        assert ok.stdout.startswith("config ok")
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_audit_verify_accepts_a_real_log_and_names_the_first_edited_row(
    telegram: TelegramHarness,
) -> None:
    for user, command in ((VIEWER_ID, "/whoami"), (ADMIN_ID, "/help"), (VIEWER_ID, "/dropslot x")):
        plain(await reply_call(telegram, user, command))
    rows = await audit_rows(telegram, 3)
    assert [r.outcome for r in rows] == [Outcome.OK, Outcome.OK, Outcome.REFUSED]

    base = short_tmpdir("rbv")
    copy = base / "audit.sqlite3"
    LEDGER.audit_paths.append(copy)
    source = sqlite3.connect(telegram.runtime.config.audit.path)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)  # consistent copy, including what is still in the -wal file
    finally:
        source.close()
        target.close()

    key = ["--key-file", str(default_key_path(telegram.runtime.config.audit.path))]
    intact = await asyncio.to_thread(run_replbot, "audit", "verify", "--db", str(copy), *key)
    assert intact.returncode == 0, intact
    assert intact.stdout.startswith("audit log ok: 3 rows, hash chain intact\nhead 3:")

    db = sqlite3.connect(copy, isolation_level=None)
    try:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET args = 'x' WHERE id = 2")
    finally:
        db.close()
    tampered = await asyncio.to_thread(run_replbot, "audit", "verify", "--db", str(copy), *key)
    assert tampered.returncode == 3, tampered
    assert tampered.stdout.strip() == (
        "audit log TAMPERED at row 2: row content was changed "
        "(or the key is not the one that wrote it)"
    )


async def test_audit_verify_expect_head_catches_a_deleted_tail_of_a_real_log(
    telegram: TelegramHarness,
) -> None:
    """The anchor is taken from the bot's own log line; the key comes from the environment."""
    for command in ("/whoami", "/help", "/whoami"):
        plain(await reply_call(telegram, ADMIN_ID, command))
    await audit_rows(telegram, 3)
    base = short_tmpdir("rbh")
    copy = base / "audit.sqlite3"
    LEDGER.audit_paths.append(copy)
    async with telegram.runtime.audit.db.execute("SELECT count(*) AS n FROM audit") as cursor:
        row = await cursor.fetchone()
        assert row is not None and row["n"] == 3
    await telegram.runtime.audit.log_head()
    anchor = re.findall(r"audit head: rows=(\d+) hash=([0-9a-f]{64})", "\n".join(LEDGER.log_lines))
    rows, digest = anchor[-1]
    assert rows == "3"
    source = sqlite3.connect(telegram.runtime.config.audit.path)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    key_file = default_key_path(telegram.runtime.config.audit.path)
    env = {"REPLBOT_AUDIT_KEY": key_file.read_text().strip()}
    verify = ("audit", "verify", "--db", str(copy), "--expect-head", f"{rows}:{digest}")

    intact = await asyncio.to_thread(run_replbot, *verify, env=env)
    assert intact.returncode == 0, intact
    assert f"head 3:{digest} " in intact.stdout

    db = sqlite3.connect(copy, isolation_level=None)
    try:
        db.execute("DROP TRIGGER audit_no_delete")
        db.execute("DELETE FROM audit WHERE id = 3")
    finally:
        db.close()
    plain_verify = await asyncio.to_thread(
        run_replbot, "audit", "verify", "--db", str(copy), env=env
    )
    assert plain_verify.returncode == 0, plain_verify  # the shorter chain alone looks fine ...
    deleted = await asyncio.to_thread(run_replbot, *verify, env=env)
    assert deleted.returncode == 3, deleted  # ... the anchor does not
    assert deleted.stdout.strip() == (
        "audit log TAMPERED at row 3: the log ends at row 2, the anchor names row 3: "
        "the newest rows were deleted"
    )
    assert env["REPLBOT_AUDIT_KEY"] not in deleted.stdout + deleted.stderr


def test_demo_rebuilds_its_replica_and_it_streams_again() -> None:
    result = run_replbot(
        "demo", "--exec", "/rebuild pg2", "--exec", "1", "--exec", "/status", timeout=180
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "✅ preflight of pg2 passed" in out, out
    assert re.search(r"^✅ rebuilt demo/pg2 \(job 1, ", out, re.M), out
    assert "pg2 streams again; old data kept in /tmp/rbdemo-" in out, out
    assert "demo clusters stopped and removed" in out


def test_demo_announces_and_resolves_an_alert_when_its_replica_stops_and_starts() -> None:
    result = run_replbot(
        "demo",
        "--exec", "/demo stop-replica",
        "--exec", "/demo wait 6",
        "--exec", "/demo start-replica",
        "--exec", "/demo wait 8",
        timeout=180,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    firing = out.find("CRITICAL demo/pg2: replica pg2 is not streaming")
    resolved = out.find("RESOLVED demo/pg2: replica pg2 is not streaming")
    assert firing != -1, out
    assert resolved > firing, out


def test_demo_diverges_its_replica_by_promoting_it_and_writing_on_it() -> None:
    result = run_replbot("demo", "--exec", "/demo diverge-replica", "--exec", "/status")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "demo replica pg2 promoted (timeline 2) and 5 rows written on it" in out, out
    assert "not in recovery: this node is a primary now" in out, out
    assert "demo clusters stopped and removed" in out
