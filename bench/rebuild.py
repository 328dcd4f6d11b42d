"""Benchmark 1: /rebuild through the bot vs a bare pg_basebackup over the same SSH path.

Same primary (≈1.1 GB of pgbench data, ``-s 75``, generated once per run), at least 5 rounds
alternating A (bot: preflight + the whole runbook, confirmation "pressed" at once) and B (bare:
the same pg_basebackup command line over one asyncssh connection with a PTY, into a scratch
directory through its own slot): A/B, B/A, ... Goals: the backup step ≤ 1.05× bare (medians);
everything else (preflight, stop, move, start, verify) ≤ 2 s.
While one rebuild runs, /status is sent repeatedly through PTB (benchmark 3's "p99 while a
rebuild runs ≤ 2× idle p99").
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncssh

from bench.common import Row, median, percentile, run_as_server_user, spread
from bench.harness import Bed, large_bed, settle
from bot.config import ReplicationSource
from bot.models import BackupProgress, RebuildProgress, RebuildState
from bot.services.rebuild.plan import Commands
from tests.sshd import SshEndpoint

REPLICA = "pg2"


class StepClock:
    """A progress sink that records when each step started."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}
        self.final: RebuildProgress | None = None
        self.last_backup: BackupProgress | None = None

    async def __call__(self, progress: RebuildProgress) -> None:
        self.starts.setdefault(progress.step, time.monotonic())
        if progress.backup is not None:
            self.last_backup = progress.backup
        if progress.state is not RebuildState.RUNNING:
            self.final = progress


async def run(
    scale: int = 75,
    rounds: int = 5,
    status_probes: bool = True,
    shared: tuple[Bed, SshEndpoint] | None = None,
) -> list[Row]:
    """A/B rounds on one bed; returns the rows of benchmark 1 (and 3's rebuild part).

    ``shared``: a :func:`large_bed` already open (and its data), else one of ``scale`` is made.
    """

    bot_backup: list[float] = []
    bot_other: list[float] = []
    bare_backup: list[float] = []
    idle_status: list[float] = []
    busy_status: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        if shared is None:
            shared = await stack.enter_async_context(large_bed(scale))
        b, endpoint = shared
        size_mb = int(b.pgset.psql("pg1", "SELECT pg_database_size('postgres')")) / 1024**2
        setup_s, scale = b.setup_s, b.scale
        b.pgset.psql("pg1", "SELECT pg_create_physical_replication_slot('bench_bare')")
        for _ in range(40):
            await asyncio.sleep(0.05)
            idle_status.append((await b.command("/status"))[0])
        for round_no in range(rounds):
            order = ("bot", "bare") if round_no % 2 == 0 else ("bare", "bot")
            for side in order:
                await settle()
                if side == "bare":
                    bare_backup.append(await _bare(b, endpoint))
                else:
                    probes = status_probes and round_no == 0
                    result = await bot_rebuild(b, probe_status=probes)
                    bot_backup.append(result.backup_s)
                    bot_other.append(result.other_s)
                    busy_status += result.busy_status
        b.pgset.psql("pg1", "SELECT pg_drop_replication_slot('bench_bare')")  # it holds WAL
    ratio = median(bot_backup) / median(bare_backup)
    rows = [
        Row(
            "rebuild",
            "primary size",
            size_mb,
            "MB",
            note=f"pgbench -s {scale}, generated once per run; servers, data and replicas "
            f"ready in {setup_s:.0f} s",
        ),
        Row(
            "rebuild",
            "bare pg_basebackup over SSH",
            median(bare_backup),
            "s",
            note=f"median of {len(bare_backup)}, spread {spread(bare_backup)} s",
            samples=bare_backup,
        ),
        Row(
            "rebuild",
            "backup step via the bot",
            median(bot_backup),
            "s",
            note=f"median of {len(bot_backup)}, spread {spread(bot_backup)} s",
            samples=bot_backup,
        ),
        Row(
            "rebuild",
            "backup step / bare",
            ratio,
            "×",
            goal="≤ 1.05×",
            met=ratio <= 1.05,
            note=f"medians of {rounds} interleaved A/B rounds (A/B, B/A, …)",
        ),
        Row(
            "rebuild",
            "everything else (preflight, stop, move, start, verify)",
            median(bot_other),
            "s",
            goal="≤ 2 s",
            met=median(bot_other) <= 2,
            note=f"median of {len(bot_other)}, spread {spread(bot_other)} s",
            samples=bot_other,
        ),
    ]
    if busy_status:
        idle99, busy99 = percentile(idle_status, 99), percentile(busy_status, 99)
        rows.append(
            Row(
                "command latency",
                "/status p99 idle vs during a rebuild",
                busy99 / idle99,
                "×",
                goal="≤ 2×",
                met=busy99 <= 2 * idle99,
                note=f"idle p99 {idle99 * 1000:.1f} ms, during rebuild p99 "
                f"{busy99 * 1000:.1f} ms (n={len(busy_status)})",
            )
        )
    return rows


@dataclass
class BotRebuild:
    """One /rebuild through the bot: its backup step, the rest, and what it copied."""

    backup_s: float
    other_s: float
    total_s: float
    backup_bytes: int  # pg_basebackup's total in its progress lines (the files it streams)
    busy_status: list[float] = field(default_factory=list)


async def bot_rebuild(b: Bed, probe_status: bool = False, node: str = REPLICA) -> BotRebuild:
    """Preflight and run the bot's rebuild of ``node`` (confirmation "pressed" at once); with
    ``probe_status``, send /status over and over while the backup runs."""
    service = b.runtime.services.rebuild
    clock = StepClock()
    started = time.monotonic()
    report, plan = await service.preflight(node)
    assert report.ok, [i for i in report.items if i.level.value == "fail"]
    await service.start(plan, 4242, 4242, clock)
    busy: list[float] = []
    if probe_status:
        while "basebackup" not in clock.starts:
            await asyncio.sleep(0.01)
        while "restore_files" not in clock.starts and "start" not in clock.starts:
            await asyncio.sleep(0.05)
            busy.append((await b.command("/status"))[0])
    job = await service.wait("main", node)
    ended = time.monotonic()
    assert job is not None and job.state is RebuildState.SUCCEEDED, job
    after = "restore_files" if "restore_files" in clock.starts else "start"
    backup = clock.starts[after] - clock.starts["basebackup"]
    run_as_server_user(["rm", "-rf", "--", job.old_dir])  # bench housekeeping only
    total_kb = clock.last_backup.total_kb if clock.last_backup is not None else 0
    total = ended - started
    return BotRebuild(backup, total - backup, total, total_kb * 1024, busy)


async def _bare(b: Bed, endpoint: object) -> float:
    node = b.runtime.config.cluster("main").node(REPLICA)  # type: ignore[union-attr]
    assert node is not None and node.replication is not None
    scratch = f"{node.data_dir}.bench-bare"
    bare_node = replace(
        node,
        data_dir=Path(scratch),
        slot="bench_bare",
        replication=ReplicationSource(**{**node.replication.__dict__}),
    )
    command = Commands(bare_node, "bench").basebackup()
    ssh = node.ssh
    assert ssh is not None
    async with asyncssh.connect(
        ssh.host,
        port=ssh.port,
        username=ssh.user,
        client_keys=[str(ssh.key_file)],
        known_hosts=str(ssh.known_hosts),
    ) as conn:
        started = time.monotonic()
        process = await conn.create_process(command, term_type="dumb", stderr=asyncssh.STDOUT)
        async for _ in process.stdout:
            pass
        await process.wait()
        elapsed = time.monotonic() - started
        assert process.exit_status == 0, process.exit_status
        with contextlib.suppress(Exception):
            await conn.run(f"rm -rf -- {shlex.quote(scratch)}", check=True)
    return elapsed
