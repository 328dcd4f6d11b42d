"""A remote step that times out or is cancelled leaves nothing running (finding 10a).

Over the real loopback sshd (bot.adapters.ssh.SshShell) and the local shell of the demo
(bot.adapters.shell.LocalShell): ``sleep N; touch MARKER`` cut short by a timeout or a cancel
must raise (RemoteError / CancelledError), and afterwards no process carrying the command's
unique token is alive and the marker file never appears — a stop that timed out must not
finish later behind the rollback's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest

from bot.adapters.shell import LocalShell
from bot.adapters.ssh import SshShell
from bot.errors import RemoteError
from bot.ports import RemoteShell
from bot.sandbox import server_os_user
from tests.integration._helpers import wait_until
from tests.sshd import LocalSshd
from tests.unit.worded import raises_worded

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSshd]:
    with LocalSshd(tmp_path_factory.mktemp("sshd")) as server:
        server.start()
        yield server


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory every OS user of the test may write into (the marker goes there)."""
    path = Path(tempfile.mkdtemp(prefix="rkill", dir="/tmp"))
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


@pytest.fixture(params=["ssh", "local"])
async def shell(request: pytest.FixtureRequest, sshd: LocalSshd) -> AsyncIterator[RemoteShell]:
    if request.param == "local":
        yield LocalShell(server_os_user())
        return
    ep = sshd.endpoint
    assert ep is not None
    conn = await asyncssh.connect(
        ep.host,
        port=ep.port,
        username=ep.user,
        client_keys=[str(ep.key_file)],
        known_hosts=str(ep.known_hosts),
        agent_path=None,
        config=None,
        connect_timeout=5,
    )
    remote = SshShell(conn, f"{ep.user}@{ep.host}:{ep.port}")
    try:
        yield remote
    finally:
        await remote.close()


def pids_with(token: str) -> list[int]:
    """Live processes whose command line contains ``token`` (pgrep -f)."""
    out = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]


def kill_leftovers(token: str) -> None:
    for pid in pids_with(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def command_for(workdir: Path) -> tuple[str, str, Path]:
    """``sleep 30.NNNN; touch MARKER``, its unique token, and the marker path."""
    token = f"30.{secrets.randbelow(10**8):08d}"
    marker = workdir / f"marker-{token}"
    return f"sleep {token}; touch {marker}", token, marker


async def assert_nothing_left(token: str, marker: Path) -> None:
    try:
        await wait_until(lambda: not pids_with(token), f"no process with {token} left", 5)
    finally:
        leftovers = pids_with(token)
        kill_leftovers(token)
    assert leftovers == []
    assert not marker.exists()


async def test_timed_out_command_is_killed(shell: RemoteShell, workdir: Path) -> None:
    command, token, marker = command_for(workdir)
    with raises_worded(RemoteError, "timed out after 1.0 s"):
        await shell.run(command, 1)
    await assert_nothing_left(token, marker)


async def test_cancelled_command_is_killed(shell: RemoteShell, workdir: Path) -> None:
    command, token, marker = command_for(workdir)
    task = asyncio.create_task(shell.run(command, 60))
    await wait_until(lambda: pids_with(token), f"the command with {token} to start", 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_nothing_left(token, marker)


async def test_cancelled_stream_is_killed(shell: RemoteShell, workdir: Path) -> None:
    command, token, marker = command_for(workdir)

    async def ignore(_: str) -> None:
        return None

    task = asyncio.create_task(shell.stream(command, ignore, 60))
    await wait_until(lambda: pids_with(token), f"the command with {token} to start", 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_nothing_left(token, marker)
