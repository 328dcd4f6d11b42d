"""A real OpenSSH server on a free 127.0.0.1 port, for integration tests and ``replbot demo
--ssh`` (key-only login, host key pinned in a known_hosts file, as in production).

``LocalSshd(base_dir).start()`` writes its own host key, a client key, an ``authorized_keys``
file and an ``sshd_config`` (all absolute paths), runs ``/usr/sbin/sshd -D -f CONF -E LOG`` and
returns an :class:`SshEndpoint` once a real key login as the login user has succeeded.

Login user: ``postgres`` when the tests run as root (the PostgreSQL servers of the test bed run
as ``postgres``), otherwise the current user (an unprivileged sshd can only log in as itself).

Things that were needed to make it work (Debian 12, OpenSSH 9.2):

* As root, ``/run/sshd`` (the privilege-separation chroot) must exist.
* Debian's ``postgres`` account is locked (``!`` in /etc/shadow): key login needs ``UsePAM yes``.
* sshd reads ``authorized_keys`` with the *login user's* uid, so that user must reach the file:
  pytest's tmp dirs are 0700 root, so as root the file goes into a private ``mkdtemp`` dir
  (0711, root) with the file owned by the login user (0600); ``StrictModes no`` (under /tmp).
* ``-f`` must be absolute (sshd re-execs itself for every connection).

Pitfall for remote commands (see tests/integration/test_sshd.py): closing or dropping an SSH
channel that runs a command *without a PTY* kills nothing: the remote process tree keeps running
as orphans. Request a PTY (``term_type=...``) so the hang-up SIGHUPs the whole process group,
and/or send a signal over the channel (``process.send_signal("TERM")``; OpenSSH delivers it with
``killpg`` to the session's process group) before closing.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import asyncssh

SSHD_PATH = "/usr/sbin/sshd"
HOST = "127.0.0.1"
_INSTALL_HINT = "install it: DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server"


class SshdError(RuntimeError):
    """sshd could not be started (missing binary, bad config, login failed, ...)."""


@dataclass(frozen=True)
class SshEndpoint:
    host: str  # "127.0.0.1"
    port: int
    user: str  # login user
    key_file: Path  # client private key (ed25519, OpenSSH format, 0600)
    known_hosts: Path  # "[127.0.0.1]:PORT ssh-ed25519 ..." for the server's host key


def default_login_user() -> str:
    """``postgres`` as root, else the current user."""
    if os.geteuid() == 0:
        return "postgres"
    return pwd.getpwuid(os.geteuid()).pw_name


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _proc_ppid_comm(pid: int) -> tuple[int, str] | None:
    """(ppid, comm) of a live process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid ..."; comm may contain spaces and parentheses
    lpar, rpar = stat.index("("), stat.rindex(")")
    fields = stat[rpar + 2 :].split()
    if fields[0] == "Z":  # zombie: already dead, only waiting to be reaped
        return None
    return int(fields[1]), stat[lpar + 1 : rpar]


def _children_map() -> dict[int, list[tuple[int, str]]]:
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        info = _proc_ppid_comm(int(entry.name))
        if info is not None:
            children.setdefault(info[0], []).append((int(entry.name), info[1]))
    return children


def descendants(pid: int) -> list[tuple[int, str]]:
    """All live descendants of ``pid`` as (pid, comm), parents before children."""
    children = _children_map()
    out: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child[0])
    return out


def _pid_alive(pid: int) -> bool:
    return _proc_ppid_comm(pid) is not None


class LocalSshd:
    """One sshd for tests: ``with LocalSshd(dir) as sshd: ep = sshd.start()``, or call stop()."""

    def __init__(
        self, base_dir: Path, login_user: str | None = None, *, sshd_path: str = SSHD_PATH
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.login_user = login_user or default_login_user()
        self.sshd_path = sshd_path
        self.log_file = self.base_dir / "sshd.log"
        self.config_file = self.base_dir / "sshd_config"
        self.pid_file = self.base_dir / "sshd.pid"
        self.host_key = self.base_dir / "ssh_host_ed25519_key"
        self.client_key = self.base_dir / "client_ed25519"
        self.known_hosts = self.base_dir / "known_hosts"
        self.pid: int | None = None
        self.endpoint: SshEndpoint | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._auth_dir: Path | None = None

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 10) -> SshEndpoint:
        if self._proc is not None:
            raise SshdError("LocalSshd already started")
        self._preflight()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        authorized_keys = self._write_keys()
        deadline = time.monotonic() + timeout
        last_error = ""
        for _attempt in range(5):  # a free port can be taken between probe and sshd's bind()
            port = free_port()
            self._write_config(port, authorized_keys)
            self._spawn()
            try:
                self._wait_listening(port, deadline)
            except _PortRace as exc:
                last_error = str(exc)
                self._terminate_listener()
                continue
            except BaseException:
                self.stop()
                raise
            self._write_known_hosts(port)
            self.endpoint = SshEndpoint(
                host=HOST,
                port=port,
                user=self.login_user,
                key_file=self.client_key,
                known_hosts=self.known_hosts,
            )
            try:
                self._check_login(self.endpoint, max(deadline - time.monotonic(), 1.0))
            except BaseException:
                self.stop()
                raise
            atexit.register(self.stop)
            return self.endpoint
        self.stop()
        raise SshdError(f"sshd could not bind a free port after 5 tries: {last_error}")

    def _preflight(self) -> None:
        if not os.access(self.sshd_path, os.X_OK):
            raise SshdError(f"OpenSSH server not found at {self.sshd_path}; {_INSTALL_HINT}")
        euid = os.geteuid()
        me = pwd.getpwuid(euid).pw_name
        try:
            pw = pwd.getpwnam(self.login_user)
        except KeyError:
            raise SshdError(f"login user {self.login_user!r} does not exist") from None
        if euid == 0:
            if pw.pw_uid == 0:
                raise SshdError("refusing to log in as root (PermitRootLogin no); use 'postgres'")
            # privilege separation directory, missing when sshd was never started by init
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        elif self.login_user != me:
            raise SshdError(f"an sshd run as {me!r} can only log in as {me!r}")
        shell = pw.pw_shell or "/bin/sh"
        if shell.endswith(("nologin", "/false")) or not os.access(shell, os.X_OK):
            raise SshdError(f"login shell {shell!r} of {self.login_user!r} cannot run commands")

    def _write_keys(self) -> Path:
        host_key = asyncssh.generate_private_key("ssh-ed25519", comment="replbot-test-host")
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="replbot-test-client")
        for path, key in ((self.host_key, host_key), (self.client_key, client_key)):
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.export_private_key("openssh"))
        self.host_key.with_suffix(".pub").write_bytes(host_key.export_public_key("openssh"))
        public = client_key.export_public_key("openssh")

        # sshd opens authorized_keys with the login user's uid (temporarily_use_uid): put it
        # where that user can reach it. As root: a fresh dir outside pytest's 0700 tmp tree.
        pw = pwd.getpwnam(self.login_user)
        if os.geteuid() == 0:
            self._auth_dir = Path(tempfile.mkdtemp(prefix="replbot-sshd-auth-"))
            self._auth_dir.chmod(0o711)
            authorized_keys = self._auth_dir / "authorized_keys"
        else:
            authorized_keys = self.base_dir / "authorized_keys"
        authorized_keys.unlink(missing_ok=True)
        fd = os.open(authorized_keys, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(public)
        if os.geteuid() == 0:
            os.chown(authorized_keys, pw.pw_uid, pw.pw_gid)
        return authorized_keys

    def _write_config(self, port: int, authorized_keys: Path) -> None:
        as_root = os.geteuid() == 0
        lines = [
            f"Port {port}",
            f"ListenAddress {HOST}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            # locked accounts (Debian's postgres) may log in by key only through PAM
            f"UsePAM {'yes' if as_root else 'no'}",
            "StrictModes no",  # authorized_keys under /tmp
            f"AllowUsers {self.login_user}",
            "PermitRootLogin no",
            "LogLevel VERBOSE",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",
            "AcceptEnv LANG LC_*",
            "MaxSessions 20",
            "MaxStartups 50",
            "Subsystem sftp internal-sftp",
        ]
        self.config_file.write_text("\n".join(lines) + "\n")
        self.config_file.chmod(0o600)

    def _spawn(self) -> None:
        self.log_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)
        # -D: stay in the foreground, so our child *is* the listener; -E: log to a file
        self._proc = subprocess.Popen(
            [self.sshd_path, "-D", "-f", str(self.config_file), "-E", str(self.log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # keep Ctrl-C of the test run and our pgrp apart from sshd
        )
        self.pid = self._proc.pid

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_listening(self, port: int, deadline: float) -> None:
        assert self._proc is not None
        while True:
            rc = self._proc.poll()
            if rc is not None:
                err = self._proc.stderr.read() if self._proc.stderr else b""
                log = self.log_text() + err.decode(errors="replace")
                if "Address already in use" in log:
                    raise _PortRace(log.strip())
                raise SshdError(f"sshd exited with {rc} on start-up; log {self.log_file}:\n{log}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                if s.connect_ex((HOST, port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise SshdError(f"sshd did not listen on {HOST}:{port}; log:\n{self.log_text()}")
            time.sleep(0.02)

    def _write_known_hosts(self, port: int) -> None:
        public = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[{HOST}]:{port} {public[0]} {public[1]}\n")

    def _check_login(self, ep: SshEndpoint, timeout: float) -> None:
        """A real login + ``id -un``, in a thread: start() also works inside a running loop."""
        result: list[BaseException | str] = []

        async def probe() -> str:
            async with asyncssh.connect(
                ep.host,
                port=ep.port,
                username=ep.user,
                client_keys=[str(ep.key_file)],
                known_hosts=str(ep.known_hosts),
                agent_path=None,
                config=None,
                connect_timeout=timeout,
            ) as conn:
                done = await conn.run("id -un", check=True, timeout=timeout)
                return str(done.stdout).strip()

        def runner() -> None:
            try:
                result.append(asyncio.run(asyncio.wait_for(probe(), timeout)))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                result.append(exc)

        t = threading.Thread(target=runner, name="sshd-login-probe", daemon=True)
        t.start()
        t.join(timeout + 2)
        outcome = result[0] if result else TimeoutError(f"no answer within {timeout:.1f}s")
        if isinstance(outcome, BaseException) or outcome != ep.user:
            raise SshdError(
                f"test login as {ep.user!r} to {ep.host}:{ep.port} failed: {outcome!r}; "
                f"sshd log {self.log_file}:\n{self.log_text()}"
            )

    # ------------------------------------------------------------------- stop
    def kill_connections(self, timeout: float = 5) -> list[int]:
        """Drop every established session, like a network failure would (from the server side).

        SIGKILLs the sshd processes below *our* listener PID (per-connection ``[priv]`` monitor
        and its ``user@notty``/``user@pts`` child); the user's commands are not touched directly:
        what happens to them is what happens on a real drop (PTY: SIGHUP; no PTY: they live on).
        The listener keeps accepting new connections. Returns the killed PIDs.
        """
        if self.pid is None or self._proc is None or self._proc.poll() is not None:
            return []
        victims = [pid for pid, comm in descendants(self.pid) if comm.startswith("sshd")]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(_pid_alive(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.01)
        return victims

    def _terminate_listener(self, timeout: float = 5) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # by our own child's PID only
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout)
        if proc.stderr:
            proc.stderr.close()
        self._proc = None
        self.pid = None

    def stop(self) -> None:
        """Drop our sessions, stop our listener (SIGTERM/SIGKILL), remove temp files; idempotent."""
        if self._proc is not None:
            self.kill_connections()  # the listener's SIGTERM does not end established sessions
            self._terminate_listener()
        if self._auth_dir is not None:
            shutil.rmtree(self._auth_dir, ignore_errors=True)
            self._auth_dir = None
        self.pid_file.unlink(missing_ok=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalSshd:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _PortRace(SshdError):
    pass
