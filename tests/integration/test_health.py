"""``GET /healthz`` over real HTTP on loopback, next to /metrics, with the real monitor
polling real PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.app import Runtime
from bot.sandbox import LocalReplicationSet
from tests.fakebotapi import FakeBotApi
from tests.integration.test_monitor import (
    api,
    audit_file,
    module_replication,
    monitored,
    replication,
)

pytestmark = pytest.mark.integration
__all__ = ["api", "module_replication", "replication"]  # fixtures


async def http_get(port: int, path: str) -> tuple[str, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    data = (await reader.read()).decode()
    writer.close()
    head, _, body = data.partition("\r\n\r\n")
    assert "Content-Type: application/json" in head, head
    return head.split("\r\n", 1)[0], json.loads(body)


async def answered_poll(runtime: Runtime) -> None:
    while runtime.polls_ok < 1:
        await asyncio.sleep(0.05)


async def test_healthz_is_200_while_the_monitor_polls_and_503_naming_it_once_it_stopped(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    metrics = '\n[metrics]\nlisten = "127.0.0.1:0"\n'
    async with monitored(replication, api, audit_file(), extra=metrics, watch_polls=True) as bot:
        await bot.settle()
        await asyncio.wait_for(answered_poll(bot.runtime), 30)  # a long poll (1 s) came back
        server = bot.runtime.metrics_server
        assert server is not None

        status, body = await asyncio.wait_for(http_get(server.port, "/healthz"), 10)
        assert status == "HTTP/1.1 200 OK"
        assert body["status"] == "ok"
        assert body["problems"] == []
        monitor = body["monitor"]
        assert isinstance(monitor, dict) and set(monitor) == {"main"}
        assert body["outbox_pending"] == 0
        telegram = body["telegram"]
        assert isinstance(telegram, dict)
        assert isinstance(telegram["polls_ok"], int) and telegram["polls_ok"] >= 1  # heard it

        await bot.runtime.monitor.stop()
        status, body = await asyncio.wait_for(http_get(server.port, "/healthz"), 10)
        assert status == "HTTP/1.1 503 Service Unavailable"
        assert body["status"] == "fail"
        assert body["problems"] == ["monitor: not running"]


async def test_health_listen_serves_healthz_alone_without_metrics(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    health = '\n[health]\nlisten = "127.0.0.1:0"\n'
    async with monitored(replication, api, audit_file(), extra=health) as bot:
        await bot.settle()
        assert bot.runtime.metrics_server is None  # metrics.listen is not set
        server = bot.runtime.health_server
        assert server is not None

        status, body = await asyncio.wait_for(http_get(server.port, "/healthz"), 10)
        assert status == "HTTP/1.1 200 OK"
        assert body["status"] == "ok"

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        reply = (await reader.read()).decode()
        writer.close()
        assert reply.startswith("HTTP/1.1 404 Not Found")
