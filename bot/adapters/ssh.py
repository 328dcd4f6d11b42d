"""RemoteShell over SSH (asyncssh). Host keys are always verified against known_hosts.

Long commands (pg_basebackup) run under a PTY: when the channel closes — on cancel, or because
the connection dropped — the hang-up reaches the whole process group, so pg_basebackup's
WAL-streaming child cannot be left orphaned holding the slot. Short commands run without a PTY
(stderr apart); any command cut short by a timeout or a cancel is signalled over the channel
(TERM, then KILL: sshd sends it to the command's process group) before the call returns, so a
stop that timed out cannot finish later behind a rollback's back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncssh

from bot.config import NodeConfig
from bot.errors import RemoteError
from bot.models import CommandResult
from bot.phrases import Phrase

CONNECT_TIMEOUT_S = 15.0
HANG_UP_WAIT_S = 3.0


class SshShell:
    """A RemoteShell over one asyncssh connection."""

    def __init__(self, conn: asyncssh.SSHClientConnection, label: str) -> None:
        self._conn = conn
        self.label = label

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run ``command`` (no PTY: stderr stays apart); RemoteError on timeout or a lost
        connection. A command cut short by the timeout or a cancel is killed (TERM to its
        process group over the channel, then KILL) before this returns."""
        try:
            process = await self._conn.create_process(command)
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(
                Phrase.of("error.remote.ssh_failed", host=self.label, reason=str(exc))
            ) from exc
        try:
            process.stdin.write_eof()
            async with asyncio.timeout(timeout):
                result = await process.wait(check=False)
        except BaseException as exc:
            await _hang_up(process)
            if isinstance(exc, TimeoutError):
                raise RemoteError(
                    Phrase.of("error.remote.timeout", host=self.label, timeout_s=timeout or 0)
                ) from exc
            if isinstance(exc, asyncssh.Error | OSError):
                raise RemoteError(
                    Phrase.of("error.remote.ssh_failed", host=self.label, reason=str(exc))
                ) from exc
            raise
        return CommandResult(
            exit_status=result.exit_status if result.exit_status is not None else 255,
            stdout=_text(result.stdout),
            stderr=_text(result.stderr),
        )

    async def stream(
        self, command: str, on_output: Callable[[str], Awaitable[None]], timeout: float | None
    ) -> CommandResult:
        """Run ``command`` under a PTY, feeding output chunks to ``on_output``."""
        try:
            process = await self._conn.create_process(
                command, term_type="dumb", term_size=(200, 24), stderr=asyncssh.STDOUT
            )
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(
                Phrase.of("error.remote.ssh_failed", host=self.label, reason=str(exc))
            ) from exc
        collected: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await process.stdout.read(4096)
                    if not chunk:
                        break
                    collected.append(chunk)
                    await on_output(chunk)
                await process.wait()
        except BaseException as exc:
            await _hang_up(process)
            if isinstance(exc, TimeoutError):
                raise RemoteError(
                    Phrase.of("error.remote.timeout", host=self.label, timeout_s=timeout or 0)
                ) from exc
            if isinstance(exc, asyncssh.Error | OSError):
                raise RemoteError(
                    Phrase.of("error.remote.ssh_failed", host=self.label, reason=str(exc))
                ) from exc
            raise
        status = process.exit_status
        output = "".join(collected)
        return CommandResult(status if status is not None else 255, output, output)

    async def close(self) -> None:
        """Close the SSH connection."""
        self._conn.close()
        with contextlib.suppress(Exception):
            await self._conn.wait_closed()


class SshConnector:
    """Opens SshShells with the node's key and known_hosts (never without verification)."""

    async def connect(self, node: NodeConfig) -> SshShell:
        """Connect to ``node.ssh``; RemoteError with the reason if that fails."""
        if node.ssh is None:
            raise RemoteError(Phrase.of("error.remote.no_ssh", node=node.name))
        ssh = node.ssh
        label = f"{ssh.user}@{ssh.host}:{ssh.port}"
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(
                    ssh.host,
                    port=ssh.port,
                    username=ssh.user,
                    client_keys=[str(ssh.key_file)],
                    known_hosts=str(ssh.known_hosts),
                    agent_path=None,
                    config=None,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    keepalive_interval=15,
                    keepalive_count_max=4,
                ),
                CONNECT_TIMEOUT_S + 5,
            )
        except TimeoutError as exc:
            raise RemoteError(Phrase.of("error.remote.connect_timeout", host=label)) from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            raise RemoteError(Phrase.of("error.remote.host_key", host=label)) from exc
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(
                Phrase.of("error.remote.connect_failed", host=label, reason=str(exc))
            ) from exc
        return SshShell(conn, label)


async def _hang_up(process: asyncssh.SSHClientProcess[str]) -> None:
    """Kill a remote command we gave up on: OpenSSH delivers a channel signal with killpg to
    the session's process group (children included, PTY or not); KILL if TERM is not enough,
    then close the channel (a PTY's hang-up covers a connection that is already gone)."""
    for sig in ("TERM", "KILL"):
        with contextlib.suppress(Exception):
            process.send_signal(sig)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(process.wait_closed()), HANG_UP_WAIT_S)
            return
    process.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(process.wait_closed(), HANG_UP_WAIT_S)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
