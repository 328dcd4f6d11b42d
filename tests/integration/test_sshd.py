"""Integration tests for tests/sshd.py: a real OpenSSH server on loopback, driven with asyncssh.

Never skipped: without /usr/sbin/sshd these fail with an "apt-get install openssh-server" message.

The orphan tests document a pitfall the rebuild code must avoid: when the SSH channel of a command
*without a PTY* is closed or the connection drops, sshd signals nothing — the remote process tree
(e.g. pg_basebackup and its WAL-streaming child) keeps running as orphans. Two cures, both measured:

* a PTY (``term_type=...``): closing/dropping the channel hangs up the terminal, the kernel
  SIGHUPs the session leader and the foreground process group, i.e. the command *and* its
  children; this works even when the connection just dies, which a signal cannot;
* a signal over the channel (``process.send_signal("TERM")``): sshd does ``killpg`` on the session's
  process group, so children die too, and SIGHUP-ignoring (nohup) children as well — but it needs a
  live connection.

Neither reaches a grandchild that left the process group/session (``setsid``); check for leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.sshd import LocalSshd, SshdError, SshEndpoint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSshd]:
    with LocalSshd(tmp_path_factory.mktemp("sshd")) as server:
        server.start()
        yield server


@pytest.fixture
def ep(sshd: LocalSshd) -> SshEndpoint:
    assert sshd.endpoint is not None
    return sshd.endpoint


async def connect(ep: SshEndpoint, known_hosts: Path | None = None) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        ep.host,
        port=ep.port,
        username=ep.user,
        client_keys=[str(ep.key_file)],
        known_hosts=str(known_hosts or ep.known_hosts),
        agent_path=None,
        config=None,
        connect_timeout=5,
    )


def procs_with_arg(token: str, uid: int) -> list[int]:
    """PIDs (not zombies) owned by ``uid`` with an argv element containing ``token``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{entry.name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue
        if int(fields["Uid"].split()[1]) == uid and any(token.encode() in a for a in argv):
            found.append(int(entry.name))
    return found


async def wait_until(pred: object, timeout: float) -> bool:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return bool(pred())


def test_default_login_user_and_key_mode(ep: SshEndpoint) -> None:
    expected = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    assert ep.user == expected
    assert ep.host == "127.0.0.1"
    assert ep.key_file.stat().st_mode & 0o777 == 0o600
    assert ep.known_hosts.read_text().startswith(f"[127.0.0.1]:{ep.port} ssh-ed25519 ")


async def test_login_runs_as_login_user(ep: SshEndpoint) -> None:
    async with await connect(ep) as conn:
        result = await conn.run("id -un", check=True, timeout=5)
    assert str(result.stdout).strip() == ep.user


async def test_wrong_host_key_is_rejected(ep: SshEndpoint, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    bad = tmp_path / "known_hosts_wrong"
    bad.write_text(f"[127.0.0.1]:{ep.port} {other}")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await connect(ep, known_hosts=bad)


async def test_kill_connections_drops_open_session(sshd: LocalSshd, ep: SshEndpoint) -> None:
    conn = await connect(ep)
    try:
        assert (await conn.run("true", timeout=5)).exit_status == 0
        killed = sshd.kill_connections()
        assert killed, "expected per-connection sshd processes under the listener"
        with pytest.raises((asyncssh.Error, OSError)):
            await conn.run("true", check=True, timeout=5)
    finally:
        conn.close()
    # the listener survives: new logins work
    async with await connect(ep) as again:
        assert (await again.run("true", timeout=5)).exit_status == 0


@pytest.mark.parametrize(
    ("pty", "ending", "orphans_expected"),
    [
        pytest.param(False, "close", True, id="no-pty-close-leaves-orphans"),
        pytest.param(False, "drop", True, id="no-pty-drop-leaves-orphans"),
        pytest.param(True, "close", False, id="pty-close-kills-tree"),
        pytest.param(True, "drop", False, id="pty-drop-kills-tree"),
        pytest.param(False, "signal", False, id="signal-kills-tree"),
    ],
)
async def test_remote_process_tree_after_channel_ends(
    sshd: LocalSshd, ep: SshEndpoint, pty: bool, ending: str, orphans_expected: bool
) -> None:
    uid = pwd.getpwnam(ep.user).pw_uid
    token = f"300.{random.randrange(10**6):06d}"  # sleep 300.NNNNNN1 / ...2: unique to this test
    # a parent shell with two children, like pg_basebackup + its WAL-streaming child
    command = f"sleep {token}1 & sleep {token}2; wait"
    conn = await connect(ep)
    try:
        process = await conn.create_process(command, term_type="dumb" if pty else None)
        assert await wait_until(lambda: len(procs_with_arg(token, uid)) >= 3, 5), "tree not started"
        if ending == "signal":
            process.send_signal("TERM")  # sshd: killpg(session pgrp, SIGTERM)
            await asyncio.wait_for(process.wait_closed(), 5)
        elif ending == "drop":
            sshd.kill_connections()  # like a dead network: the client never says goodbye
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), 5)

        if orphans_expected:
            await asyncio.sleep(0.5)
            left = procs_with_arg(token, uid)
            assert len(left) == 3, f"pitfall no longer reproduces (leftovers {left})"
        else:
            gone = await wait_until(lambda: not procs_with_arg(token, uid), 3)
            assert gone, f"orphans left: {procs_with_arg(token, uid)}"
    finally:
        conn.close()
        for pid in procs_with_arg(token, uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_stop_refuses_connections_and_reaps_pid(tmp_path: Path) -> None:
    server = LocalSshd(tmp_path)
    ep = server.start()
    pid = server.pid
    assert pid is not None and Path(f"/proc/{pid}").exists()
    server.stop()
    assert server.pid is None
    assert not Path(f"/proc/{pid}").exists()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.settimeout(2)
        s.connect((ep.host, ep.port))
    server.stop()  # idempotent


def test_missing_sshd_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(SshdError, match="apt-get install -y openssh-server"):
        LocalSshd(tmp_path, sshd_path=str(tmp_path / "no-sshd")).start()
