"""Benchmark 6: repairing a diverged replica with pg_rewind vs a full /rebuild; resume time.

One primary of ≈1.1 GB (pgbench ``-s 75``, generated once per run) whose WAL is sized as on a
large database (``max_wal_size = 64MB``, ``min_wal_size = 32MB``, no ``wal_keep_size``), and a
replica with ``wal_log_hints = on`` and a ``wal_keep_size`` that keeps its own WAL back to the
last common checkpoint (pg_rewind needs it). Before each timed repair the replica is diverged:
promoted, a contiguous ~1 % of ``pgbench_accounts`` rows (an aid range) updated on each side,
CHECKPOINT on both, the promoted replica stopped cleanly.

Per round, in alternating order (rewind/full, full/rewind, ...):

* rewind: :func:`repair_via_bot` — for now the bare ``pg_rewind --progress`` over SSH, then the
  standby configuration, start, and the wait until it streams. Once the bot's ``/repair``
  lands, that one function switches to it (confirmation pressed at once).
* full: the bot's ``/rebuild`` of the same (diverged, stopped) replica.

Then, on the healthy replica: resume after a plain ``pg_ctl stop -m fast`` —
:func:`resume_via_bot`, for now the bare start, timed until the replica streams (both the
primary's ``pg_stat_replication`` under its name and its own ``pg_stat_wal_receiver``).

Bytes: pg_rewind's own "need to copy N MB" estimate and the kB its progress reports copied;
the WAL part is the size of the source's ``pg_wal`` at the time (before PostgreSQL 19 pg_rewind
copies all of it). The full copy's bytes are pg_basebackup's total.
Goals: rewind bytes ≤ 10 % and time ≤ 25 % of the full copy's; resume ≤ 5 s plus WAL replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import shlex
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncssh
import psycopg

from bench.common import Row, median, spread
from bench.harness import (
    LARGE_DB_SETTINGS,
    REPAIR_NODE,
    REPAIR_NODE_SETTINGS,
    Bed,
    large_bed,
    settle,
)
from bench.rebuild import bot_rebuild
from bot.config import NodeConfig
from bot.sandbox import LocalNode, LocalReplicationSet
from tests.sshd import SshEndpoint

REPLICA = REPAIR_NODE
REWIND_NOTE = "bare pg_rewind (bot /repair not yet wired)"
RESUME_NOTE = "bare pg_ctl start (bot /repair not yet wired)"
STREAM_TIMEOUT_S = 120.0
_PLANNED_RE = re.compile(r"need to copy (\d+) MB \(total source directory size is (\d+) MB\)")
_PROGRESS_RE = re.compile(r"(\d+)/(\d+) kB \((\d+)%\) copied")
MB = 1024**2


@dataclass
class Moved:
    """What one repair moved, as far as its output tells."""

    copied_bytes: int | None  # pg_rewind's progress: every file and block it copied
    planned_bytes: int | None  # pg_rewind's "need to copy N MB" estimate
    note: str  # how the repair was done (bare commands or the bot)
    output: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase, when known


def parse_rewind_output(text: str) -> tuple[int | None, int | None]:
    """(bytes pg_rewind's progress says it copied, bytes its plan said it needs to copy)."""
    planned = _PLANNED_RE.search(text)
    progress = _PROGRESS_RE.findall(text.replace("\r", "\n"))
    copied = int(progress[-1][0]) * 1024 if progress else None
    return copied, int(planned.group(1)) * MB if planned else None


def _node(b: Bed) -> NodeConfig:
    cluster = b.runtime.config.cluster("main")
    node = cluster.node(REPLICA) if cluster is not None else None
    assert node is not None and node.ssh is not None and node.replication is not None
    return node


@asynccontextmanager
async def _connect(node: NodeConfig) -> AsyncIterator[asyncssh.SSHClientConnection]:
    ssh = node.ssh
    assert ssh is not None
    async with asyncssh.connect(
        ssh.host,
        port=ssh.port,
        username=ssh.user,
        client_keys=[str(ssh.key_file)],
        known_hosts=str(ssh.known_hosts),
    ) as conn:
        yield conn


async def _remote(conn: asyncssh.SSHClientConnection, command: str) -> str:
    """Run ``command`` with a PTY (a hang-up ends it); its output; raise unless it exits 0."""
    done = await conn.run(command, term_type="dumb", check=False)
    output = str(done.stdout or "")
    if done.exit_status != 0:
        raise RuntimeError(f"{command!r} exited {done.exit_status}:\n{output[-2000:]}")
    return output


async def repair_via_bot(b: Bed) -> Moved:
    """THE timed rewind of the diverged, stopped replica, until it streams again.

    For now the bare commands the bot's rewind path runs: ``pg_rewind --progress`` over SSH,
    then ``standby.signal``, ``primary_conninfo`` and ``primary_slot_name`` (pg_rewind copied
    the source's ``postgresql.auto.conf``), start, wait until it streams. To switch to the
    bot's ``/repair``: preflight + start its plan here (confirmation pressed at once), wait for
    it, and return its bytes with a note saying it was the bot.
    """
    node = _node(b)
    assert node.replication is not None and node.data_dir and node.pg_bin_dir
    primary = b.pgset.primary
    source = f"host={primary.socket_dir} port={primary.port} user=postgres dbname=postgres"
    data = str(node.data_dir)
    rewind = shlex.join(
        [
            *b.pgset.binaries.env_prefix(),
            f"{node.pg_bin_dir}/pg_rewind",
            f"--target-pgdata={data}",
            f"--source-server={source}",
            "--progress",
        ]
    )
    conninfo = node.replication.conninfo(application_name=node.application_name or node.name)
    auto = (
        f"primary_conninfo = '{conninfo.replace(chr(39), chr(39) * 2)}'\n"
        f"primary_slot_name = '{node.slot}'\n"
    )
    standby = (
        f"printf %s {shlex.quote(auto)} >> {shlex.quote(data + '/postgresql.auto.conf')}"
        f" && touch {shlex.quote(data + '/standby.signal')}"
    )
    marks = [time.monotonic()]
    async with _connect(node) as conn:
        output = await _remote(conn, rewind)
        marks.append(time.monotonic())
        await _remote(conn, standby)
        await _remote(conn, str(node.start_command))
        marks.append(time.monotonic())
    await wait_streams(b.pgset, REPLICA)
    marks.append(time.monotonic())
    copied, planned = parse_rewind_output(output)
    names = ("pg_rewind", "configure+start", "until streaming")
    phases = dict(zip(names, _steps(marks), strict=True))
    return Moved(copied, planned, REWIND_NOTE, output, phases)


def _steps(marks: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(marks)]


async def resume_via_bot(b: Bed) -> str:
    """THE timed resume of the plainly stopped replica, until it streams; returns the note.

    For now the bare start (the bot's resume path starts it and verifies); to switch to the
    bot's ``/repair``: run its plan here instead.
    """
    node = _node(b)
    async with _connect(node) as conn:
        await _remote(conn, str(node.start_command))
    await wait_streams(b.pgset, REPLICA)
    return RESUME_NOTE


async def wait_streams(pgset: LocalReplicationSet, name: str) -> None:
    """Until both sides say ``name`` streams: the primary's pg_stat_replication under its
    application_name and the replica's own pg_stat_wal_receiver."""
    primary, replica = pgset.primary, pgset.node(name)
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    async with await psycopg.AsyncConnection.connect(
        host=str(primary.socket_dir), port=primary.port, user="postgres", dbname="postgres",
        autocommit=True,
    ) as pconn:  # fmt: skip
        while time.monotonic() < deadline:
            cur = await pconn.execute(
                "SELECT count(*) FROM pg_stat_replication"
                " WHERE application_name = %s AND state = 'streaming'",
                (name,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0 and await _receiver_streams(replica):
                return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{name} does not stream after {STREAM_TIMEOUT_S:.0f} s")


async def _receiver_streams(replica: LocalNode) -> bool:
    try:
        async with await psycopg.AsyncConnection.connect(
            host=str(replica.socket_dir), port=replica.port,
            user="postgres", dbname="postgres", autocommit=True, connect_timeout=2,
        ) as rconn:  # fmt: skip
            cur = await rconn.execute("SELECT status FROM pg_stat_wal_receiver")
            row = await cur.fetchone()
            return row is not None and row[0] == "streaming"
    except psycopg.OperationalError:
        return False  # not accepting connections yet


Ranges = list[tuple[int, int]]


def _wait_replayed(pgset: LocalReplicationSet, lsn: str) -> None:
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    while pgset.psql(REPLICA, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") != "t":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{REPLICA} did not replay up to {lsn}")
        time.sleep(0.05)


def diverge(pgset: LocalReplicationSet, rows: int, total_rows: int, round_no: int) -> Ranges:
    """Promote the replica and update a contiguous range of ``rows`` accounts on each side;
    CHECKPOINT both; stop the promoted replica cleanly. Returns the two aid ranges.

    A checkpoint on the primary, replayed and followed by a restartpoint on the replica just
    before the promotion, makes the last common checkpoint recent (as on a busy system).
    """
    _wait_replayed(pgset, pgset.psql("pg1", "CHECKPOINT; SELECT pg_current_wal_lsn()"))
    pgset.psql(REPLICA, "CHECKPOINT")
    pgset.psql(REPLICA, "SELECT pg_promote(true, 60)")
    # Different ranges per side and per round: the primary's from the start of the table,
    # the replica's from the middle.
    first = 1 + (round_no * rows) % max(1, total_rows // 2 - rows)
    update = "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN {} AND {}"
    pgset.psql("pg1", update.format(first, first + rows - 1) + "; CHECKPOINT")
    mid = total_rows // 2 + first
    pgset.psql(REPLICA, update.format(mid, mid + rows - 1) + "; CHECKPOINT")
    pgset.stop_node(REPLICA)
    return [(first, first + rows - 1), (mid, mid + rows - 1)]


def check_converged(pgset: LocalReplicationSet, ranges: Ranges) -> None:
    """After a repair: once the replica replayed up to the primary, both ranges hold the
    primary's rows there (the replica's diverged updates are gone, the primary's arrived)."""
    _wait_replayed(pgset, pgset.psql("pg1", "SELECT pg_current_wal_lsn()"))
    for first, last in ranges:
        query = (
            "SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts"
            f" WHERE aid BETWEEN {first} AND {last}"
        )
        primary, replica = pgset.psql("pg1", query), pgset.psql(REPLICA, query)
        if primary != replica:
            raise AssertionError(
                f"aid {first}–{last}: sum(abalance) {replica} on {REPLICA}, {primary} on pg1"
            )


def _wal_dir_bytes(pgset: LocalReplicationSet) -> int:
    return int(pgset.psql("pg1", "SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()"))


async def run(
    scale: int = 75, rounds: int = 3, shared: tuple[Bed, SshEndpoint] | None = None
) -> list[Row]:
    """Rounds of rewind vs full (alternating), each after a fresh divergence, and a resume.

    ``shared``: a :func:`large_bed` already open (and its data), else one of ``scale`` is made.
    """
    rewind_s: list[float] = []
    full_s: list[float] = []
    resume_s: list[float] = []
    rewind_bytes: list[float] = []
    planned_bytes: list[float] = []
    wal_bytes: list[float] = []
    full_bytes: list[float] = []
    behind_bytes: list[float] = []
    rewind_phases: dict[str, list[float]] = {}
    full_backup_s: list[float] = []
    note = REWIND_NOTE
    resume_note = RESUME_NOTE
    async with contextlib.AsyncExitStack() as stack:
        if shared is None:
            shared = await stack.enter_async_context(large_bed(scale))
        b, _endpoint = shared
        pgset, scale, setup_s = b.pgset, b.scale, b.setup_s
        total_rows = scale * 100_000
        rows = max(1, total_rows // 100)
        size_mb = int(pgset.psql("pg1", "SELECT pg_database_size('postgres')")) / MB
        for round_no in range(rounds):
            order = ("rewind", "full") if round_no % 2 == 0 else ("full", "rewind")
            for side in order:
                ranges = await asyncio.to_thread(diverge, pgset, rows, total_rows, round_no)
                await settle()
                if side == "rewind":
                    wal_bytes.append(await asyncio.to_thread(_wal_dir_bytes, pgset))
                    started = time.monotonic()
                    moved = await repair_via_bot(b)
                    rewind_s.append(time.monotonic() - started)
                    note = moved.note
                    for phase, seconds in moved.phases.items():
                        rewind_phases.setdefault(phase, []).append(seconds)
                    if moved.copied_bytes is not None:
                        rewind_bytes.append(moved.copied_bytes)
                    if moved.planned_bytes is not None:
                        planned_bytes.append(moved.planned_bytes)
                else:
                    full = await bot_rebuild(b, node=REPLICA)
                    full_s.append(full.total_s)
                    full_backup_s.append(full.backup_s)
                    full_bytes.append(full.backup_bytes)
                await asyncio.to_thread(check_converged, pgset, ranges)
            await asyncio.to_thread(pgset.stop_node, REPLICA)
            behind_bytes.append(
                float(
                    pgset.psql(
                        "pg1",
                        "SELECT pg_current_wal_lsn() - restart_lsn FROM pg_replication_slots"
                        f" WHERE slot_name = '{REPLICA}'",
                    )
                )
            )
            started = time.monotonic()
            resume_note = await resume_via_bot(b)
            resume_s.append(time.monotonic() - started)
    return _rows(
        scale=scale,
        size_mb=size_mb,
        setup_s=setup_s,
        rows=rows,
        total_rows=total_rows,
        rewind_s=rewind_s,
        full_s=full_s,
        resume_s=resume_s,
        rewind_bytes=rewind_bytes,
        planned_bytes=planned_bytes,
        wal_bytes=wal_bytes,
        full_bytes=full_bytes,
        behind_bytes=behind_bytes,
        note=note,
        resume_note=resume_note,
        replica_settings=REPAIR_NODE_SETTINGS,
        rewind_phases=rewind_phases,
        full_backup_s=full_backup_s,
    )


def _mb(values: list[float]) -> list[float]:
    return [v / MB for v in values]


def _rows(
    *,
    scale: int,
    size_mb: float,
    setup_s: float,
    rows: int,
    total_rows: int,
    rewind_s: list[float],
    full_s: list[float],
    resume_s: list[float],
    rewind_bytes: list[float],
    planned_bytes: list[float],
    wal_bytes: list[float],
    full_bytes: list[float],
    behind_bytes: list[float],
    note: str,
    resume_note: str,
    replica_settings: dict[str, str],
    rewind_phases: dict[str, list[float]],
    full_backup_s: list[float],
) -> list[Row]:
    n = len(rewind_s)
    conf = ", ".join(f"{k} = {v}" for k, v in LARGE_DB_SETTINGS.items())
    replica_conf = ", ".join(f"{k} = {v}" for k, v in replica_settings.items())
    phases = "".join(f"; {k} {median(v):.2f} s" for k, v in rewind_phases.items())
    out = [
        Row(
            "repair",
            "primary size",
            size_mb,
            "MB",
            note=f"pgbench -s {scale}, generated once (ready in {setup_s:.0f} s); {conf}, "
            f"no wal_keep_size; replica: {replica_conf}",
        ),
        Row(
            "repair",
            "divergence per side",
            rows,
            "rows",
            note=f"a contiguous aid range, {100 * rows / total_rows:.2g} % of {total_rows} "
            "pgbench_accounts rows on each side, before each timed repair",
        ),
        Row(
            "repair",
            "rewind: time until it streams",
            median(rewind_s),
            "s",
            note=f"{note}; median of {n}, spread {spread(rewind_s)} s{phases}",
            samples=rewind_s,
        ),
        Row(
            "repair",
            "full: /rebuild time until it streams",
            median(full_s),
            "s",
            note=f"bot /rebuild of the diverged replica; median of {len(full_s)}, "
            f"spread {spread(full_s)} s; backup step {median(full_backup_s):.2f} s",
            samples=full_s,
        ),
    ]
    time_ratio = median(rewind_s) / median(full_s)
    out.append(
        Row(
            "repair",
            "rewind time / full time",
            100 * time_ratio,
            "%",
            goal="≤ 25 %",
            met=time_ratio <= 0.25,
            note="medians, rounds alternate rewind/full and full/rewind",
        )
    )
    if rewind_bytes:
        planned = (
            f"; pg_rewind planned {median(_mb(planned_bytes)):.0f} MB" if planned_bytes else ""
        )
        out.append(
            Row(
                "repair",
                "rewind: bytes copied",
                median(_mb(rewind_bytes)),
                "MB",
                note=f"pg_rewind --progress, median of {len(rewind_bytes)}, spread "
                f"{spread(_mb(rewind_bytes))} MB{planned}",
                samples=_mb(rewind_bytes),
            )
        )
    out.append(
        Row(
            "repair",
            "rewind: of which the source's pg_wal",
            median(_mb(wal_bytes)),
            "MB",
            note="size of the primary's pg_wal before each rewind (pg_rewind < 19 copies it "
            f"all); spread {spread(_mb(wal_bytes))} MB",
            samples=_mb(wal_bytes),
        )
    )
    out.append(
        Row(
            "repair",
            "full: bytes copied",
            median(_mb(full_bytes)),
            "MB",
            note=f"pg_basebackup's total, median of {len(full_bytes)}",
            samples=_mb(full_bytes),
        )
    )
    if rewind_bytes and full_bytes:
        bytes_ratio = median(rewind_bytes) / median(full_bytes)
        out.append(
            Row(
                "repair",
                "rewind bytes / full bytes",
                100 * bytes_ratio,
                "%",
                goal="≤ 10 %",
                met=bytes_ratio <= 0.10,
                note="medians",
            )
        )
    out.append(
        Row(
            "repair",
            "resume after a plain stop: time until it streams",
            median(resume_s),
            "s",
            goal="≤ 5 s + WAL replay",
            met=max(resume_s) <= 5,
            note=f"{resume_note}; both sides streaming; median of {len(resume_s)}, spread "
            f"{spread(resume_s)} s; WAL behind {median(behind_bytes) / 1024:.0f} kB (median)",
            samples=resume_s,
        )
    )
    return out
