"""RemoteShell adapters: a local executor (the demo) and the per-node router.

The SSH implementation lives in :mod:`bot.adapters.ssh`. The local shell runs each command in
its own session, so a cancel kills the whole process group, as the PTY hang-up does over SSH.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable

from bot.config import NodeConfig
from bot.errors import RemoteError
from bot.models import CommandResult
from bot.phrases import Phrase
from bot.ports import RemoteShell, ShellConnector


class LocalShell:
    """A RemoteShell on this host (the demo), as the PostgreSQL OS user when we are root."""

    def __init__(self, run_as: str | None) -> None:
        self._run_as = run_as
        self.label = f"local ({run_as or 'current user'})"

    def _argv(self, command: str) -> list[str]:
        if self._run_as is not None:
            return ["runuser", "-u", self._run_as, "--", "/bin/bash", "-c", command]
        return ["/bin/bash", "-c", command]

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run ``command`` with bash; RemoteError on timeout."""
        proc = await asyncio.create_subprocess_exec(
            *self._argv(command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException as exc:
            _kill_group(proc.pid)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise RemoteError(
                    Phrase.of("error.remote.timeout", host=self.label, timeout_s=timeout or 0)
                ) from exc
            raise
        return CommandResult(
            proc.returncode if proc.returncode is not None else 255,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )

    async def stream(
        self, command: str, on_output: Callable[[str], Awaitable[None]], timeout: float | None
    ) -> CommandResult:
        """Run ``command`` in its own session; cancel kills the whole process group."""
        proc = await asyncio.create_subprocess_exec(
            *self._argv(command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
        assert proc.stdout is not None
        collected: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await proc.stdout.read(4096)
                    if not chunk:
                        break
                    text = chunk.decode(errors="replace")
                    collected.append(text)
                    await on_output(text)
                await proc.wait()
        except BaseException as exc:
            _kill_group(proc.pid)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise RemoteError(
                    Phrase.of("error.remote.timeout", host=self.label, timeout_s=timeout or 0)
                ) from exc
            raise
        output = "".join(collected)
        return CommandResult(
            proc.returncode if proc.returncode is not None else 255, output, output
        )

    async def close(self) -> None:
        """Nothing to close."""


def _kill_group(pid: int) -> None:
    """TERM the process group we started (our own child's session only)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)


class LocalConnector:
    """ShellConnector for nodes with ``shell = "local"``."""

    def __init__(self, run_as: str | None) -> None:
        self._run_as = run_as

    async def connect(self, node: NodeConfig) -> LocalShell:
        """A LocalShell; there is no connection to fail."""
        return LocalShell(self._run_as)


class RoutingConnector:
    """Chooses SSH or local per node (``shell`` key in the config).

    asyncssh (and its cryptography stack) is imported on the first SSH connection only: a bot
    that never rebuilds does not carry it in memory.
    """

    def __init__(self, local: LocalConnector) -> None:
        self._local = local
        self._ssh: ShellConnector | None = None

    async def connect(self, node: NodeConfig) -> RemoteShell:
        """Open the shell the node's config asks for."""
        if node.shell == "local":
            return await self._local.connect(node)
        if self._ssh is None:
            from bot.adapters.ssh import SshConnector

            self._ssh = SshConnector()
        return await self._ssh.connect(node)
