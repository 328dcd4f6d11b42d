"""Benchmark 6: repairing a diverged replica with pg_rewind vs a full /rebuild; resume time.

One primary of ≈1.1 GB (pgbench ``-s 75``, generated once per run) whose WAL is sized as on a
large database (``max_wal_size = 64MB``, ``min_wal_size = 32MB``, no ``wal_keep_size``), and a
replica with ``wal_log_hints = on`` and a ``wal_keep_size`` that keeps its own WAL back to the
last common checkpoint (pg_rewind needs it). Before each timed repair the replica is diverged:
promoted, a contiguous ~1 % of ``pgbench_accounts`` rows (an aid range) updated on each side,
CHECKPOINT on both, the promoted replica stopped cleanly.

Per round, in alternating order (rewind/full, full/rewind, ...):

* rewind: :func:`repair_via_bot` — the bot's ``/repair`` (its diagnosis with pg_rewind's dry
  run, the confirmation pressed at once, the plan: save the diverged WAL aside, pg_rewind,
  standby configuration, start, verify), and the wait until it streams.
* full: the bot's ``/rebuild`` of the same (diverged, stopped) replica.

Then, on the healthy replica: resume after a plain ``pg_ctl stop -m fast`` —
:func:`resume_via_bot`, the bot's ``/repair`` resume path, timed until the replica streams
(both the primary's ``pg_stat_replication`` under its name and its own
``pg_stat_wal_receiver``).

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
import time
from dataclasses import dataclass, field

import psycopg

from bench.common import Row, median, run_as_server_user, spread
from bench.harness import (
    LARGE_DB_SETTINGS,
    REPAIR_NODE,
    REPAIR_NODE_SETTINGS,
    Bed,
    large_bed,
    settle,
)
from bench.rebuild import bot_rebuild
from bot.models import RebuildState
from bot.sandbox import LocalNode, LocalReplicationSet
from bot.services.plans.model import Plan
from bot.services.repair.models import PathName, RepairProgress
from bot.services.repair.rewind import grant_statements
from tests.sshd import SshEndpoint

REPLICA = REPAIR_NODE
REWIND_NOTE = "the bot's /repair (rewind path: diagnosis, plan, pg_rewind, start, verify)"
RESUME_NOTE = "the bot's /repair (resume path: diagnosis, start, verify from both sides)"
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


class _StepTimes:
    """The repair's progress sink: when each step started (by title), and the final report."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}
        self.last: RepairProgress | None = None

    async def __call__(self, progress: RepairProgress) -> None:
        self.starts.setdefault(progress.step, time.monotonic())
        self.last = progress


async def _bot_repair(b: Bed, expected: PathName) -> tuple[_StepTimes, Plan]:
    """The bot's /repair of the replica: diagnose, "press" the confirmation at once, wait."""
    service = b.runtime.services.repair
    assert service is not None
    proposal = await service.diagnose(REPLICA, "main")
    assert proposal.chosen is expected and proposal.plan is not None, proposal.options
    times = _StepTimes()
    await service.start(REPLICA, "main", proposal.tag, proposal.digest, 4242, 4242, times)
    job = await service.wait("main", REPLICA)
    assert job is not None and job.state is RebuildState.SUCCEEDED, job
    await wait_streams(b.pgset, REPLICA)
    return times, proposal.plan


async def repair_via_bot(b: Bed) -> Moved:
    """THE timed rewind of the diverged, stopped replica by the bot's ``/repair`` (its
    diagnosis, the confirmation pressed at once, the plan), until it streams again."""
    started = time.monotonic()
    times, plan = await _bot_repair(b, PathName.REWIND)
    ended = time.monotonic()
    output = times.last.log_tail if times.last is not None else ""
    copied, planned = parse_rewind_output(output)
    titles = [step.title for step in plan.steps]
    marks = [started, *(times.starts[t] for t in titles if t in times.starts), ended]
    phases: dict[str, float] = {"diagnosis": marks[1] - marks[0]}
    for title, (begin, end) in zip(
        [t for t in titles if t in times.starts], itertools.pairwise(marks[1:]), strict=True
    ):
        phases[title.split(" (")[0]] = end - begin
    return Moved(copied, planned, REWIND_NOTE, output, _main_phases(phases))


def _main_phases(phases: dict[str, float]) -> dict[str, float]:
    """The phases worth a column: diagnosis, pg_rewind itself, and all the rest."""
    rewind = sum(v for k, v in phases.items() if k.startswith("pg_rewind from"))
    diagnosis = phases.get("diagnosis", 0.0)
    rest = sum(phases.values()) - rewind - diagnosis
    return {"diagnosis": diagnosis, "pg_rewind": rewind, "the other steps": rest}


async def resume_via_bot(b: Bed) -> str:
    """THE timed resume of the plainly stopped replica by the bot's ``/repair`` (resume
    path: start, verify from both sides), until it streams; returns the note."""
    await _bot_repair(b, PathName.RESUME)
    return RESUME_NOTE


def _remove_kept(pgset: LocalReplicationSet) -> None:
    """Bench housekeeping: the side directories the rewinds kept (an admin's job in life)."""
    data = pgset.node(REPLICA).data_dir
    for kept in data.parent.glob(f"{data.name}.replbot-diverged-*"):
        run_as_server_user(["rm", "-rf", "--", str(kept)])


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
        # the replication role is pg_rewind's source without superuser (README's grants)
        pgset.psql("pg1", "\n".join(grant_statements(pgset.repl_user)))
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
                    await asyncio.to_thread(_remove_kept, pgset)
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
