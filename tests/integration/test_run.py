"""``replbot --log-format json run`` as a process, the way systemd starts it: the config from
$REPLBOT_CONFIG, JSON log lines without a secret, /healthz 200 once it hears Telegram and
polls PostgreSQL, and a clean exit 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess

import pytest

from bot.sandbox import LocalReplicationSet
from bot.sshd import free_port
from tests.conftest import LEDGER, config_toml, short_tmpdir
from tests.fakebotapi import FakeBotApi
from tests.integration.test_cli import replbot_argv

pytestmark = pytest.mark.integration
PASSWORD_ENV = "REPLBOT_TEST_DB_PASSWORD"


async def healthz(port: int) -> tuple[str, dict[str, object]] | None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None  # not listening yet
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    data = (await reader.read()).decode()
    writer.close()
    head, _, body = data.partition("\r\n\r\n")
    return head.split("\r\n", 1)[0], json.loads(body)


async def healthy(port: int, process: subprocess.Popen[str]) -> dict[str, object]:
    while True:
        assert process.poll() is None, "replbot run exited early"
        answer = await healthz(port)
        if answer is not None and answer[0] == "HTTP/1.1 200 OK":
            telegram = answer[1].get("telegram")
            if isinstance(telegram, dict) and int(telegram["polls_ok"]) >= 1:
                return answer[1]
        await asyncio.sleep(0.2)


async def test_run_logs_json_serves_healthz_and_exits_0_on_sigterm(
    pgset: LocalReplicationSet, fake_api: FakeBotApi
) -> None:
    base = short_tmpdir("rbr")
    port = free_port()
    config = base / "config.toml"
    text = config_toml(
        pgset, base / "audit.sqlite3", PASSWORD_ENV, f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    config.write_text(
        text.replace(
            'token = "123456:TEST-fake-token-abcdef"',
            f'token = "{fake_api.token}"\nbase_url = "{fake_api.base_url}"',
        )
    )
    LEDGER.audit_paths.append(base / "audit.sqlite3")
    env = {**os.environ, "REPLBOT_CONFIG": str(config), PASSWORD_ENV: pgset.bot_password}
    env.pop("REPLBOT_TELEGRAM_TOKEN", None)
    process = subprocess.Popen(
        [*replbot_argv(), "--log-format", "json", "--log-level", "debug", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
    )
    try:
        body = await asyncio.wait_for(healthy(port, process), 90)
        assert body["status"] == "ok"
        assert body["problems"] == []
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    LEDGER.texts.extend([out, err])

    assert process.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]  # every line is one object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    messages = [r["message"] for r in records]
    assert any(m.startswith("replbot running: 1 cluster(s), 3 user(s)") for m in messages)
    assert "stopping" in messages
    assert any(r["level"] == "DEBUG" for r in records)  # --log-level debug reached the root
    assert fake_api.token not in err and pgset.bot_password not in err
