"""The test bed of the /repair rewind tests (not a test module).

:func:`repair_bed` is a :class:`~tests.integration.rebuild_bed.RebuildBed` (primary ``pg1``,
replica ``pg2`` on slot ``pg2``, a real sshd logging in as the server OS user) whose replica
has ``wal_log_hints = on`` and a ``wal_keep_size`` (its own WAL back to the last common
checkpoint), and whose replication role may be pg_rewind's source without superuser (the
EXECUTE grants of :data:`bot.services.repair.rewind.REWIND_FUNCTIONS`).

:func:`diverge` makes pg2 a diverged replica: a table both sides share, pg2 promoted, rows
written on pg2 (``diverged``) and then on the primary (``primary``), pg2 stopped cleanly.

The probes are blocking: call them with ``asyncio.to_thread`` from async tests.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.sandbox import PgBinaries
from bot.services.repair.rewind import grant_statements
from tests.integration.rebuild_bed import PRIMARY, REPLICA, RebuildBed, rebuild_bed

TABLE = "rewind_probe"
COMMON_ROWS = 10
DIVERGED_ROWS = 25
PRIMARY_ROWS = 30


@contextlib.contextmanager
def repair_bed(
    binaries: PgBinaries,
    *,
    wal_log_hints: bool = True,
    replica_wal_keep_size: str = "256MB",
) -> Iterator[RebuildBed]:
    """A started rebuild bed whose replica can be rewound (see the module docstring).

    ``wal_log_hints=False`` also turns data checksums off (initdb enables them by default
    since PostgreSQL 18): the replica then has neither."""
    initdb_args = ("--no-data-checksums",) if not wal_log_hints and binaries.major >= 18 else ()
    replica_settings = {
        "wal_log_hints": "on" if wal_log_hints else "off",
        "wal_keep_size": replica_wal_keep_size,
    }
    with rebuild_bed(
        binaries, node_settings={REPLICA: replica_settings}, initdb_args=initdb_args
    ) as bed:
        bed.psql(PRIMARY, "\n".join(grant_statements(bed.pgset.repl_user)))
        yield bed


def wait_for(check: object, what: str, timeout: float = 60) -> None:
    """Poll the callable ``check`` until it returns True."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Divergence:
    """What :func:`diverge` did: the table's relfilenode (to find it in pg_waldump)."""

    table: str
    relfilenode: int
    database_oid: int


def diverge(bed: RebuildBed, *, recycle_replica_wal: bool = False, stop: bool = True) -> Divergence:
    """Promote pg2 and write on both sides; stop pg2 cleanly (unless ``stop`` is False:
    then it keeps running as a primary).

    ``recycle_replica_wal``: after its writes, pg2 switches WAL segments and checkpoints
    until its WAL from before the fork is recycled (with ``wal_keep_size = 0`` that makes
    a rewind impossible)."""
    bed.psql(PRIMARY, f"CREATE TABLE {TABLE} (id int PRIMARY KEY, side text NOT NULL)")
    bed.psql(
        PRIMARY, f"INSERT INTO {TABLE} SELECT g, 'common' FROM generate_series(1, {COMMON_ROWS}) g"
    )
    wait_for(
        lambda: (
            bed.psql(REPLICA, f"SELECT to_regclass('{TABLE}') IS NOT NULL") == "t"
            and bed.psql(REPLICA, f"SELECT count(*) FROM {TABLE}") == str(COMMON_ROWS)
        ),
        "the common rows on pg2",
    )
    relfilenode = int(bed.psql(PRIMARY, f"SELECT pg_relation_filenode('{TABLE}')"))
    db_oid = int(bed.psql(PRIMARY, "SELECT oid FROM pg_database WHERE datname = 'postgres'"))
    assert bed.psql(REPLICA, "SELECT pg_promote(true, 60)") == "t"
    bed.psql(
        REPLICA,
        f"INSERT INTO {TABLE} SELECT g, 'diverged'"
        f" FROM generate_series(101, {100 + DIVERGED_ROWS}) g",
    )
    bed.psql(
        PRIMARY,
        f"INSERT INTO {TABLE} SELECT g, 'primary'"
        f" FROM generate_series(201, {200 + PRIMARY_ROWS}) g",
    )
    if recycle_replica_wal:
        for _ in range(4):
            bed.psql(
                REPLICA, "CREATE TABLE IF NOT EXISTS churn (x int); INSERT INTO churn VALUES (1)"
            )
            bed.psql(REPLICA, "SELECT pg_switch_wal()")
            bed.psql(REPLICA, "CHECKPOINT")
    if stop:
        bed.pgset.stop_node(REPLICA)
    return Divergence(TABLE, relfilenode, db_oid)


def sides(bed: RebuildBed) -> dict[str, int]:
    """Rows per ``side`` of the table on pg2."""
    out = bed.psql(REPLICA, f"SELECT side, count(*) FROM {TABLE} GROUP BY side ORDER BY side")
    return {side: int(n) for side, n in (line.split("|") for line in out.splitlines())}


def waldump_inserts(
    bed: RebuildBed, wal_dir: Path, div: Divergence, timeline: int, start_lsn: str
) -> int:
    """Heap INSERT records into the table that pg_waldump finds in ``wal_dir`` on
    ``timeline`` from ``start_lsn`` on (read as root: the directory belongs to the server
    OS user)."""
    waldump = str(bed.pgset.binaries.exe("pg_waldump"))
    rel = f"rel 1663/{div.database_oid}/{div.relfilenode} "
    result = subprocess.run(
        [waldump, "-p", str(wal_dir), "-t", str(timeline), "-s", start_lsn],
        capture_output=True,
        text=True,
        timeout=60,
        env={**bed.pgset.binaries.env(), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    return sum(
        1
        for line in result.stdout.splitlines()
        if "rmgr: Heap" in line and "INSERT" in line and rel in line
    )
