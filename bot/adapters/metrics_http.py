"""A tiny asyncio HTTP server for Prometheus and probes: ``GET /metrics`` and ``GET /healthz``.

Opt-in (``[metrics] listen = "127.0.0.1:9187"``). One request per connection, a bounded
request head, a read timeout; no library needed for something this small. ``/healthz``
answers 200 or 503 with a JSON body (see :mod:`bot.services.monitor.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_READ_TIMEOUT_S = 5.0
_MAX_HEAD = 8192


class MetricsServer:
    """Serves ``await render()`` at ``/metrics`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        host: str,
        port: int,
        render: Callable[[], Awaitable[str]] | None,
        health: Callable[[], Awaitable[tuple[bool, str]]] | None = None,
    ) -> None:
        """``render()``: the exposition at ``/metrics`` (None: a health-only listener);
        ``health()`` -> (healthy, JSON body), served at ``/healthz`` when given."""
        self._host = host
        self._port = port
        self._render = render
        self._health = health
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        paths = [p for p, f in (("/metrics", self._render), ("/healthz", self._health)) if f]
        log.info("serving %s on http://%s:%d", " and ".join(paths), self._host, self.port)

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEAD:
                raise ValueError("request head too large")
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET":
                await _respond(writer, 405, "method not allowed\n", "text/plain")
            elif path.split("?", 1)[0] == "/healthz" and self._health is not None:
                healthy, body = await self._health()
                await _respond(writer, 200 if healthy else 503, body + "\n", "application/json")
            elif path.split("?", 1)[0] != "/metrics" or self._render is None:
                await _respond(writer, 404, "see /metrics or /healthz\n", "text/plain")
            else:
                await _respond(writer, 200, await self._render(), CONTENT_TYPE)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            with contextlib.suppress(Exception):
                await _respond(writer, 400, "bad request\n", "text/plain")
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _respond(writer: asyncio.StreamWriter, status: int, body: str, content_type: str) -> None:
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        503: "Service Unavailable",
    }[status]
    data = body.encode("utf-8")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode("latin-1")
        + data
    )
    await writer.drain()
