"""The rewind path of /repair: bring a diverged replica back with pg_rewind.

A replica that was promoted by mistake, or the old primary after a failover, wrote WAL the
primary never saw. ``pg_rewind`` copies only the blocks that changed since the fork point
(plus, before PostgreSQL 19, the source's whole ``pg_wal``) instead of the whole database.

Reading (read-only, :func:`gather_rewind_facts`): the target's ``pg_controldata``, its
``pg_wal`` listing and ``*.history`` files over SSH (:meth:`RewindCommands.probe`); the
primary's timeline and history over a replication connection made from the replica host
(``IDENTIFY_SYSTEM``, ``TIMELINE_HISTORY n`` with psql: the extended protocol is refused in
replication mode); the primary's slots, its oldest WAL segment (``pg_ls_waldir()``) and
whether the source role holds the grants pg_rewind needs; when the target runs, its role and
client count. :func:`dry_run_rewind` runs ``pg_rewind --dry-run`` on a stopped target: the
bytes the rewind would copy, or why it cannot.

Deciding (pure): :func:`rewind_preconditions` — one :class:`Precondition` per requirement,
each ``ok`` with a reason code and the values it looked at. ``pg_rewind --dry-run`` is the
final word (it finds "could not find previous WAL record" when the target lacks its WAL back
to the last common checkpoint; the segment check here sees only the fork segment onward).

Changing (:func:`build_rewind_plan` → a :class:`~bot.services.plans.model.Plan`): keep or
create the slot; stop the target if it runs (the plan's facts say it ran as a primary and how
many clients it had); check it is shut down cleanly; save what pg_rewind will discard — the
target's WAL from the fork segment on, its ``*.history`` files, ``global/pg_control``, its
``postgresql.auto.conf`` and replica-local config files — in ``DATA.replbot-diverged-TAG``
(next to the data directory; a directory of that name is never reused); ``pg_rewind
--dry-run``; ``pg_rewind --write-recovery-conf`` (with ``allow_full_fallback``: on failure
the rewound directory is renamed to ``DATA.replbot-rewound-TAG`` and a pg_basebackup
follows, in the same step); restore replica-local config files; append
``primary_slot_name`` (pg_rewind -R writes ``standby.signal`` and ``primary_conninfo`` only)
and check what the server will read; start; wait until it streams under its name on its slot.
Nothing is ever deleted.

The source role needs, without superuser, EXECUTE on :data:`REWIND_FUNCTIONS`
(:func:`grant_statements`).

PostgreSQL's ``pg_controldata`` is read here by a small private parser
(:func:`_controldata_fields`); the repair service's ``controldata.parse_controldata`` reads
the same text.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from bot.config import ClusterConfig, NodeConfig
from bot.errors import RemoteError, ReplbotError
from bot.phrases import Phrase
from bot.ports import Postgres, RemoteShell
from bot.services.plans.model import (
    Plan,
    Probe,
    RemoteCommand,
    SlotChange,
    SlotOp,
    Sql,
    SqlTarget,
    Step,
    Wait,
)
from bot.services.rebuild.plan import Commands, _guarded_move, require_rebuild_config
from bot.services.repair.timeline import Divergence, classify_divergence, lsn_to_int

#: Functions pg_rewind calls on the source; a role with EXECUTE on them needs no superuser.
REWIND_FUNCTIONS = (
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
)
DIRECTORY_EXISTS_EXIT = 3
CLEAN_STATES = ("shut down", "shut down in recovery")
ESTIMATE_RE = re.compile(r"need to copy (\d+) MB \(total source directory size is (\d+) MB\)")
_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$")
DEFAULT_SEGMENT_SIZE = 16 * 1024**2
STREAMING_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0
REWIND_TIMEOUT_S = 6 * 3600.0


def grant_statements(role: str) -> list[str]:
    """The GRANTs that let ``role`` be pg_rewind's source (run once on the primary)."""
    ident = '"' + role.replace('"', '""') + '"'
    return [f"GRANT EXECUTE ON FUNCTION {fn} TO {ident};" for fn in REWIND_FUNCTIONS]


def parse_rewind_estimate(output: str) -> tuple[int, int] | None:
    """pg_rewind's "need to copy N MB (total source directory size is M MB)" -> bytes
    (to copy, source total), or None when it did not say."""
    match = ESTIMATE_RE.search(output)
    if match is None:
        return None
    return int(match.group(1)) * 1024**2, int(match.group(2)) * 1024**2


def q(word: str | PurePosixPath) -> str:
    """Shell-quote one word."""
    return shlex.quote(str(word))


def _conninfo_value(value: str) -> str:
    if value and all(c.isalnum() or c in "._-/:@" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------------- the target's state


@dataclass(frozen=True)
class TargetState:
    """What the target host shows about the data directory (read-only probe)."""

    running: bool
    state: str = ""  # "Database cluster state"
    timeline: int = 0
    checkpoint_lsn: str = "0/0"
    min_recovery_end_lsn: str = "0/0"
    min_recovery_end_timeline: int = 0
    data_checksums: bool = False
    wal_log_hints: bool = False
    wal_segment_size: int = DEFAULT_SEGMENT_SIZE
    system_identifier: str = ""
    histories: tuple[tuple[int, str], ...] = ()  # (timeline, file content)
    wal_segments: tuple[str, ...] = ()  # file names in pg_wal (segments and .partial)
    pg_rewind_present: bool = False

    def history(self, timeline: int) -> str:
        """The history file content of ``timeline`` ("" for timeline 1 or when absent)."""
        return next((text for tli, text in self.histories if tli == timeline), "")

    @property
    def end_lsn(self) -> str:
        """How far the stopped target's data goes, as pg_rewind reads it: the later of its
        last checkpoint and its minimum recovery end (a standby stopped in recovery)."""
        if lsn_to_int(self.min_recovery_end_lsn) > lsn_to_int(self.checkpoint_lsn):
            return self.min_recovery_end_lsn
        return self.checkpoint_lsn

    @property
    def end_timeline(self) -> int:
        """The timeline the data is on (the newer of checkpoint and minimum recovery)."""
        return max(self.timeline, self.min_recovery_end_timeline)


def _controldata_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def parse_target_probe(output: str) -> TargetState:
    """:meth:`RewindCommands.probe` output -> :class:`TargetState`."""
    control_lines: list[str] = []
    histories: list[tuple[int, str]] = []
    segments: list[str] = []
    running = rewind = False
    for line in output.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "cd":
            control_lines.append(rest)
        elif tag == "wal" and _SEGMENT_RE.match(rest.strip()):
            segments.append(rest.strip())
        elif tag == "history":
            name, _, payload = rest.strip().partition(" ")
            try:
                text = base64.b64decode(payload, validate=True).decode()
                histories.append((int(name.split(".")[0], 16), text))
            except (ValueError, binascii.Error, UnicodeDecodeError):
                continue
        elif tag == "status":
            running = rest.strip() == "0"
        elif tag == "pg_rewind":
            rewind = rest.strip() == "yes"
    cd = _controldata_fields("\n".join(control_lines))

    def number(key: str, default: int = 0) -> int:
        value = cd.get(key, "")
        return int(value) if value.isdigit() else default

    return TargetState(
        running=running,
        state=cd.get("Database cluster state", ""),
        timeline=number("Latest checkpoint's TimeLineID"),
        checkpoint_lsn=cd.get("Latest checkpoint location", "0/0"),
        min_recovery_end_lsn=cd.get("Minimum recovery ending location", "0/0"),
        min_recovery_end_timeline=number("Min recovery ending loc's timeline"),
        data_checksums=number("Data page checksum version") > 0,
        wal_log_hints=cd.get("wal_log_hints setting", "off") == "on",
        wal_segment_size=number("Bytes per WAL segment", DEFAULT_SEGMENT_SIZE),
        system_identifier=cd.get("Database system identifier", ""),
        histories=tuple(sorted(histories)),
        wal_segments=tuple(sorted(segments)),
        pg_rewind_present=rewind,
    )


def parse_identify_system(output: str) -> tuple[str, int, str]:
    """psql -A -t ``IDENTIFY_SYSTEM`` -> (system identifier, timeline, current LSN)."""
    fields = output.strip().splitlines()[-1].split("|") if output.strip() else []
    if len(fields) < 3 or not fields[1].isdigit():
        raise RemoteError(
            Phrase.of(
                "error.repair.bad_answer",
                command="IDENTIFY_SYSTEM",
                output=repr(output.strip()[:200]),
            )
        )
    return fields[0], int(fields[1]), fields[2]


def parse_timeline_history(output: str) -> str:
    """psql -A -t ``TIMELINE_HISTORY n`` -> the history file's content."""
    name, sep, content = output.partition("|")
    if not sep or not name.strip().endswith(".history"):
        raise RemoteError(
            Phrase.of(
                "error.repair.bad_answer",
                command="TIMELINE_HISTORY",
                output=repr(output.strip()[:200]),
            )
        )
    return content


# ---------------------------------------------------------------------- commands


class RewindCommands:
    """The shell command lines of a rewind of one replica (absolute binaries)."""

    def __init__(self, node: NodeConfig, tag: str, application_name: str) -> None:
        require_rebuild_config(node)
        assert node.data_dir and node.pg_bin_dir and node.replication and node.slot
        self.node = node
        self.application_name = application_name
        self.data_dir = PurePosixPath(node.data_dir)
        self.bin = PurePosixPath(node.pg_bin_dir)
        self.side_dir = PurePosixPath(f"{self.data_dir}.replbot-diverged-{tag}")
        self.rewound_dir = PurePosixPath(f"{self.data_dir}.replbot-rewound-{tag}")
        self.slot = node.slot
        self.replication = node.replication
        self.rebuild = Commands.for_job(
            node, str(self.side_dir), str(self.rewound_dir), application_name
        )

    def probe(self) -> str:
        """Read-only: server status, pg_controldata, pg_wal listing, history files, whether
        pg_rewind exists — tagged lines (see :func:`parse_target_probe`)."""
        data, wal = q(self.data_dir), q(self.data_dir / "pg_wal")
        return "; ".join(
            [
                f"echo status $({q(self.bin / 'pg_ctl')} status -D {data} >/dev/null 2>&1; "
                "echo $?)",
                f"LC_ALL=C {q(self.bin / 'pg_controldata')} {data} 2>/dev/null | sed 's/^/cd /'",
                f"ls -1 {wal} 2>/dev/null | sed 's/^/wal /'",
                f'for f in {wal}/*.history; do [ -f "$f" ] && '
                'echo history "$(basename "$f")" "$(base64 -w0 < "$f")"; done',
                f"if [ -x {q(self.bin / 'pg_rewind')} ]; then echo pg_rewind yes; fi",
                "true",
            ]
        )

    def identify_system(self) -> str:
        """IDENTIFY_SYSTEM on the primary over a replication connection from the replica host."""
        return self.rebuild.identify_system()

    def timeline_history(self, timeline: int) -> str:
        """TIMELINE_HISTORY on the primary over a replication connection (simple protocol)."""
        conninfo = self.replication.conninfo(replication="true", connect_timeout="10")
        return (
            f"{q(self.bin / 'psql')} -X -A -t -d {q(conninfo)} "
            f"-c {q(f'TIMELINE_HISTORY {int(timeline)}')}"
        )

    def source_conninfo(self) -> str:
        """pg_rewind's source: the replication source's host and role (password from the
        passfile), database ``postgres``, and the replica's application_name, which -R
        copies into primary_conninfo."""
        return self.replication.conninfo(
            dbname="postgres", application_name=self.application_name, connect_timeout="10"
        )

    def check_clean_shutdown(self) -> str:
        """Exit 0 only if pg_controldata says the cluster was shut down cleanly."""
        return (
            f"LC_ALL=C {q(self.bin / 'pg_controldata')} {q(self.data_dir)} | "
            "grep -Eq '^Database cluster state: +shut down( in recovery)?$'"
        )

    def save_diverged(self, fork_lsn: str, segment_size: int) -> str:
        """Copy what pg_rewind will discard into the side directory (cp -p), refusing an
        existing one; print ``saved_bytes=N`` (the WAL kept)."""
        side, data = q(self.side_dir), q(self.data_dir)
        segs_per_id = 0x100000000 // segment_size
        fork_seg = lsn_to_int(fork_lsn) // segment_size
        key = f"{fork_seg // segs_per_id:08X}{fork_seg % segs_per_id:08X}"
        keep = " ".join(q(name) for name in ("postgresql.auto.conf", *self.node.keep_files))
        select = (
            f"awk -v key={key} '/^[0-9A-F]+(\\.partial)?$/ && length($0) >= 24 "
            '&& substr($0, 9, 16) "" >= key ""\''
        )
        return (
            f"if [ -e {side} ]; then echo {q(f'{self.side_dir} already exists')} >&2; "
            f"exit {DIRECTORY_EXISTS_EXIT}; fi; "
            f"mkdir -m 700 -- {side} && mkdir -- {side}/pg_wal {side}/global && "
            f"cp -p -- {data}/global/pg_control {side}/global/ && "
            f'for f in {keep}; do if [ -e {data}/"$f" ]; then '
            f'cp -p -- {data}/"$f" {side}/ || exit 1; fi; done && '
            f"cd {data}/pg_wal && "
            f'for f in $(ls -1 | {select}) *.history; do if [ -f "$f" ]; then '
            f'cp -p -- "$f" {side}/pg_wal/ || exit 1; fi; done && '
            f'echo "saved_bytes=$(du -sb {side}/pg_wal | cut -f1)"'
        )

    def pg_rewind(self, dry_run: bool) -> str:
        """pg_rewind from the primary; -R writes standby.signal and primary_conninfo."""
        words = [
            str(self.bin / "pg_rewind"),
            f"--target-pgdata={self.data_dir}",
            f"--source-server={self.source_conninfo()}",
            "--progress",
            "--no-ensure-shutdown",  # the plan checked the clean shutdown itself
        ]
        words.append("--dry-run" if dry_run else "--write-recovery-conf")
        return " ".join(q(w) for w in words)

    def rewind_or_full(self) -> str:
        """pg_rewind; if it fails, the rewound directory goes aside (renamed, never deleted)
        and a full pg_basebackup follows."""
        note = q("replbot: pg_rewind failed; the data directory goes aside, a full copy follows")
        return (
            f"{self.pg_rewind(dry_run=False)} || {{ echo {note} >&2; "
            f"{_guarded_move(self.data_dir, self.rewound_dir)} && "
            f"{self.rebuild.basebackup()}; }}"
        )

    def restore_files(self) -> str | None:
        """Put the replica-local config files back (pg_rewind copies the source's)."""
        if not self.node.keep_files:
            return None
        parts = []
        for name in self.node.keep_files:
            saved, live = q(self.side_dir / name), q(self.data_dir / name)
            parts.append(f"if [ -e {saved} ]; then cp -p -- {saved} {live} || exit 1; fi")
        return "; ".join(parts)

    def standby_config(self) -> str:
        """Append primary_slot_name to postgresql.auto.conf (original kept in the side
        directory) and make sure standby.signal exists."""
        data = self.data_dir
        auto = q(data / "postgresql.auto.conf")
        line = q(f"primary_slot_name = '{self.slot}'")
        return (
            f"cp -p -- {auto} {q(self.side_dir / 'postgresql.auto.conf.rewound')} && "
            f"printf '%s\\n' {line} >> {auto} && touch -- {q(data / 'standby.signal')}"
        )

    def check_standby_config(self) -> str:
        """Exit 0 only if the server will read standby.signal, the slot and the name."""
        conf = q(PurePosixPath(self.node.effective_conf_dir or self.data_dir))
        postgres = q(self.bin / "postgres")
        # the whole word: application_name=pg2 must not match pg20
        value = re.escape(f"application_name={_conninfo_value(self.application_name)}")
        pattern = q(f"(^| ){value}( |$)")
        return (
            f"test -f {q(self.data_dir / 'standby.signal')} && "
            f'[ "$({postgres} -D {conf} -C primary_slot_name)" = {q(self.slot)} ] && '
            f"{postgres} -D {conf} -C primary_conninfo | grep -Eq -- {pattern}"
        )


# ---------------------------------------------------------------------- facts and decisions


@dataclass(frozen=True)
class RewindFacts:
    """Everything the rewind plan and its preconditions are computed from."""

    target: TargetState
    primary_timeline: int
    primary_lsn: str
    primary_history: str
    slot_exists: bool
    divergence: Divergence | None
    target_lsn: str  # how far the target's data goes (insert LSN when it runs as a primary)
    target_timeline: int
    target_in_recovery: bool | None = None  # None: not running
    target_client_connections: int = 0
    source_missing_grants: tuple[str, ...] = ()  # of REWIND_FUNCTIONS, for the source role
    primary_oldest_segment: str = ""  # the oldest WAL segment file in the primary's pg_wal
    primary_system_identifier: str = ""  # IDENTIFY_SYSTEM on the primary

    @property
    def runs_as_primary(self) -> bool:
        """The target is up and not in recovery (promoted by mistake, or an old primary)."""
        return self.target.running and self.target_in_recovery is False


async def gather_rewind_facts(
    pg: Postgres, shell: RemoteShell, cluster: ClusterConfig, node: NodeConfig, timeout: float
) -> RewindFacts:
    """Read both sides (read-only) and classify the divergence."""
    cmd = RewindCommands(node, "probe", node.application_name or node.name)
    probe = await shell.run(cmd.probe(), timeout)
    target = parse_target_probe(probe.stdout)
    ident = await shell.run(cmd.identify_system(), timeout)
    if ident.exit_status != 0:
        raise RemoteError(
            Phrase.of(
                "error.repair.identify_failed", node=node.name, output=ident.stderr.strip()[-300:]
            )
        )
    primary_sysid, primary_tli, primary_lsn = parse_identify_system(ident.stdout)
    primary_history = ""
    if primary_tli > 1:
        hist = await shell.run(cmd.timeline_history(primary_tli), timeout)
        if hist.exit_status != 0:
            raise RemoteError(
                Phrase.of("error.repair.history_failed", output=hist.stderr.strip()[-300:])
            )
        primary_history = parse_timeline_history(hist.stdout)
    primary = await pg.snapshot(cluster.primary)
    slot_exists = any(s.name == node.slot for s in primary.slots)
    missing_grants = await _missing_grants(pg, cluster.primary, cmd.replication.user)
    oldest = await pg.execute(
        cluster.primary,
        # the oldest by segment number, whatever its timeline (like the diagnosis)
        "SELECT name FROM pg_catalog.pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'"
        " ORDER BY substr(name, 9) LIMIT 1",
    )
    target_lsn, target_tli = target.end_lsn, target.end_timeline
    in_recovery: bool | None = None
    clients = 0
    if target.running:
        try:
            snap = await pg.snapshot(node)
            rows = await pg.execute(
                node,
                "SELECT count(*) FROM pg_catalog.pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid()"
                " AND application_name NOT LIKE 'replbot%%'",  # not the bot's own sessions
            )
        except ReplbotError:
            snap = None
            rows = []
        if snap is not None:
            in_recovery = snap.in_recovery
            target_lsn = snap.lsn or target_lsn
            target_tli = snap.timeline or target_tli
        clients = int(str(rows[0][0])) if rows else 0
    divergence = classify_divergence(
        target_tli,
        target_lsn,
        target.history(target_tli),
        primary_tli,
        primary_history,
        primary_lsn,
    )
    return RewindFacts(
        target=target,
        primary_timeline=primary_tli,
        primary_lsn=primary_lsn,
        primary_history=primary_history,
        slot_exists=slot_exists,
        divergence=divergence,
        target_lsn=target_lsn,
        target_timeline=target_tli,
        target_in_recovery=in_recovery,
        target_client_connections=clients,
        source_missing_grants=missing_grants,
        primary_oldest_segment=str(oldest[0][0] or "") if oldest else "",
        primary_system_identifier=primary_sysid,
    )


async def _missing_grants(pg: Postgres, primary: NodeConfig, role: str) -> tuple[str, ...]:
    """Which of :data:`REWIND_FUNCTIONS` ``role`` may not execute on the primary."""
    try:
        rows = await pg.execute(
            primary,
            "SELECT f, pg_catalog.has_function_privilege(%s, f, 'EXECUTE')"
            " FROM unnest(ARRAY[%s, %s, %s, %s]::text[]) AS f",
            (role, *REWIND_FUNCTIONS),
        )
    except ReplbotError:  # e.g. no such role: then it may execute none of them
        return REWIND_FUNCTIONS
    return tuple(str(fn) for fn, allowed in rows if allowed is not True)


@dataclass(frozen=True)
class RewindDryRun:
    """What ``pg_rewind --dry-run`` said: ``ok``, the bytes it would copy (None when it did
    not say) out of the source's total, and the tail of its output (the reason on failure)."""

    ok: bool
    copy_bytes: int | None
    source_bytes: int | None
    tail: str


async def dry_run_rewind(
    shell: RemoteShell, node: NodeConfig, application_name: str, timeout: float
) -> RewindDryRun:
    """Run ``pg_rewind --dry-run`` on a stopped target (read-only: it modifies nothing, and
    ``--no-ensure-shutdown`` keeps it from starting the server): the diagnosis's bytes to
    move, and its verdict ("could not find previous WAL record" → a full copy)."""
    cmd = RewindCommands(node, "dry-run", application_name)
    result = await shell.run(cmd.pg_rewind(dry_run=True), timeout)
    output = result.stdout + result.stderr
    estimate = parse_rewind_estimate(output)
    lines = [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip()]
    return RewindDryRun(
        ok=result.exit_status == 0,
        copy_bytes=estimate[0] if estimate else None,
        source_bytes=estimate[1] if estimate else None,
        tail="\n".join(lines[-5:]),
    )


@dataclass(frozen=True)
class Precondition:
    """One requirement of the rewind path: ``ok``, a reason code, the values looked at."""

    key: str  # diverged, system_identifier, hints, shutdown, own_wal, source_wal, ...
    ok: bool
    reason: str  # a code the rendering layer words
    values: tuple[tuple[str, str], ...] = field(default=())


def _segno(name: str, segs_per_id: int) -> int | None:
    match = _SEGMENT_RE.match(name)
    if match is None:
        return None
    return int(match.group(2), 16) * segs_per_id + int(match.group(3), 16)


def missing_segments(target: TargetState, fork_lsn: str, end_lsn: str) -> list[int]:
    """Segment numbers between the fork point and the target's end that its pg_wal lacks
    (any timeline counts: the segment of a switch is on the newer one)."""
    size = target.wal_segment_size
    segs_per_id = 0x100000000 // size
    have = {n for n in (_segno(s, segs_per_id) for s in target.wal_segments) if n is not None}
    first, last = lsn_to_int(fork_lsn) // size, max(lsn_to_int(end_lsn), lsn_to_int(fork_lsn))
    return [n for n in range(first, last // size + 1) if n not in have]


def rewind_preconditions(facts: RewindFacts, node: NodeConfig) -> tuple[Precondition, ...]:
    """Whether pg_rewind can mend this target, requirement by requirement."""
    t, div = facts.target, facts.divergence
    found: list[Precondition] = []
    if div is None:
        found.append(Precondition("diverged", False, "not_diverged"))
    else:
        found.append(
            Precondition(
                "diverged",
                div.rewindable,
                "diverged" if div.rewindable else div.kind,
                (
                    ("fork_lsn", div.fork_lsn),
                    ("fork_timeline", str(div.fork_timeline)),
                    ("wal_past_fork_bytes", str(div.wal_past_fork_bytes)),
                ),
            )
        )
    same = bool(t.system_identifier) and t.system_identifier == facts.primary_system_identifier
    found.append(
        Precondition(
            "system_identifier",
            same,
            "same_system" if same else "other_system",
            (
                ("target", t.system_identifier or "?"),
                ("primary", facts.primary_system_identifier or "?"),
            ),
        )
    )
    hints = t.wal_log_hints or t.data_checksums
    found.append(
        Precondition(
            "hints",
            hints,
            "hints_on" if hints else "no_hints",
            (
                ("wal_log_hints", "on" if t.wal_log_hints else "off"),
                ("data_checksums", "on" if t.data_checksums else "off"),
            ),
        )
    )
    if t.running:
        stoppable = node.stop_command is not None
        found.append(
            Precondition(
                "shutdown",
                stoppable,
                "running_stoppable" if stoppable else "running_no_stop_command",
                (("state", t.state), ("clients", str(facts.target_client_connections))),
            )
        )
    else:
        clean = t.state in CLEAN_STATES
        found.append(
            Precondition("shutdown", clean, "clean" if clean else "unclean", (("state", t.state),))
        )
    if div is not None and div.rewindable and not t.running:
        missing = missing_segments(t, div.fork_lsn, facts.target_lsn)
        found.append(
            Precondition(
                "own_wal",
                not missing,
                "wal_present" if not missing else "wal_missing",
                (("missing_segments", str(len(missing))),),
            )
        )
    if div is not None and div.rewindable and facts.primary_oldest_segment:
        # the rewound target replays from before the fork: the primary must still have it
        segs_per_id = 0x100000000 // t.wal_segment_size
        oldest = _segno(facts.primary_oldest_segment, segs_per_id)
        fork_seg = lsn_to_int(div.fork_lsn) // t.wal_segment_size
        kept = oldest is not None and oldest <= fork_seg
        found.append(
            Precondition(
                "source_wal",
                kept,
                "source_wal_present" if kept else "source_wal_removed",
                (("oldest_segment", facts.primary_oldest_segment), ("fork_lsn", div.fork_lsn)),
            )
        )
    grants = facts.source_missing_grants
    found.append(
        Precondition(
            "source_grants",
            not grants,
            "granted" if not grants else "not_granted",
            (("missing", ", ".join(grants)),) if grants else (),
        )
    )
    found.append(
        Precondition(
            "pg_rewind", t.pg_rewind_present, "present" if t.pg_rewind_present else "absent"
        )
    )
    return tuple(found)


def rewind_possible(preconditions: Sequence[Precondition]) -> bool:
    """True when every precondition holds (the plan's dry-run still has the last word)."""
    return all(p.ok for p in preconditions)


# ---------------------------------------------------------------------- the plan


def build_rewind_plan(
    cluster: ClusterConfig,
    node: NodeConfig,
    facts: RewindFacts,
    tag: str,
    application_name: str,
    allow_full_fallback: bool,
    sync_state: str = "",
) -> Plan:
    """The steps of a rewind of ``node``, exactly as they will run (see the module doc)."""
    if facts.divergence is None or not facts.divergence.rewindable:
        raise ReplbotError(
            Phrase.of("error.repair.not_diverged", node=node.name, primary=cluster.primary.name)
        )
    div = facts.divergence
    cmd = RewindCommands(node, tag, application_name)
    host = node.ssh.host if node.ssh else "localhost"
    steps: list[Step] = []
    if not facts.slot_exists:
        steps.append(
            Step(
                "create_slot",
                Phrase.of("step.create_slot_keeping", slot=cmd.slot, primary=cluster.primary.name),
                Sql(
                    SqlTarget.PRIMARY,
                    "SELECT slot_name"
                    " FROM pg_catalog.pg_create_physical_replication_slot(%s, true)",
                    (cmd.slot,),
                ),
                SlotChange(SlotOp.DROP, cmd.slot),  # the plan created it: nothing else uses it
            )
        )
    if facts.target.running:
        # the client count moves until the stop: it is shown in ``info``, not in the title
        what = (
            Phrase.of("step.stop_live_primary", node=node.name)
            if facts.runs_as_primary
            else Phrase.of("step.stop", node=node.name)
        )
        assert node.stop_command is not None
        steps += [
            # undone (started again) only before pg_rewind ran: nothing was changed until then
            Step(
                "stop",
                what,
                RemoteCommand(node.stop_command, timeout_s=STOP_TIMEOUT_S),
                RemoteCommand(cmd.rebuild.start_unless_running()),  # it may not have stopped
            ),
            Step(
                "stopped",
                Phrase.of("step.stopped"),
                Wait(Probe.SERVER_STOPPED, STOP_TIMEOUT_S),
            ),
        ]
    steps += [
        Step(
            "check_clean",
            Phrase.of("step.check_clean"),
            RemoteCommand(cmd.check_clean_shutdown()),
        ),
        Step(
            "save_diverged",
            Phrase.of("step.save_diverged", lsn=div.fork_lsn, path=str(cmd.side_dir)),
            RemoteCommand(cmd.save_diverged(div.fork_lsn, facts.target.wal_segment_size)),
        ),
        Step(
            "rewind_dry_run",
            Phrase.of("step.rewind_dry_run"),
            RemoteCommand(
                cmd.pg_rewind(dry_run=True),
                ok_exits=(0, 1) if allow_full_fallback else (0,),
                timeout_s=REWIND_TIMEOUT_S,
                stream=True,
            ),
        ),
        Step(
            "rewind",
            Phrase.of("step.rewind_or_full", primary=cluster.primary.name)
            if allow_full_fallback
            else Phrase.of("step.rewind", primary=cluster.primary.name),
            RemoteCommand(
                cmd.rewind_or_full() if allow_full_fallback else cmd.pg_rewind(dry_run=False),
                timeout_s=REWIND_TIMEOUT_S,
                stream=True,
            ),
            irreversible=True,
        ),
    ]
    restore = cmd.restore_files()
    if restore:
        steps.append(Step("restore_files", Phrase.of("step.restore_files"), RemoteCommand(restore)))
    steps += [
        Step(
            "standby_config",
            Phrase.of("step.standby_config", slot=cmd.slot),
            RemoteCommand(cmd.standby_config()),
        ),
        Step(
            "check_config",
            Phrase.of("step.check_config"),
            RemoteCommand(cmd.check_standby_config()),
        ),
        Step("start", Phrase.of("step.start", node=node.name), RemoteCommand(cmd.rebuild.start())),
        Step(
            "streaming",
            Phrase.of("step.streaming_as", name=application_name, slot=cmd.slot),
            Wait(
                Probe.STREAMING,
                STREAMING_TIMEOUT_S,
                args=(cmd.slot, application_name, sync_state)
                if sync_state
                else (cmd.slot, application_name),
            ),
        ),
    ]
    keeps = [str(cmd.side_dir), f"slot {cmd.slot}"]
    if allow_full_fallback:
        keeps.append(f"{cmd.rewound_dir} (if pg_rewind fails)")
    return Plan(
        kind="repair.rewind",
        cluster=cluster.name,
        node=node.name,
        host=host,
        steps=tuple(steps),
        keeps=tuple(keeps),
        # bound by the approval: what decides what the plan does to which data
        facts=(
            ("fork_lsn", div.fork_lsn),
            ("fork_timeline", str(div.fork_timeline)),
            ("target_timeline", str(facts.target_timeline)),
            ("primary_timeline", str(facts.primary_timeline)),
            ("system_identifier", facts.target.system_identifier),
            ("target_runs_as_primary", "yes" if facts.runs_as_primary else "no"),
            ("side_dir", str(cmd.side_dir)),
            ("allow_full_fallback", "yes" if allow_full_fallback else "no"),
        ),
        # shown only: a target running as a primary moves these until it is stopped
        info=(
            ("target_lsn", facts.target_lsn),
            ("wal_past_fork_bytes", str(div.wal_past_fork_bytes)),
            ("target_client_connections", str(facts.target_client_connections)),
        ),
    )


__all__ = [
    "REWIND_FUNCTIONS",
    "Precondition",
    "RewindCommands",
    "RewindDryRun",
    "RewindFacts",
    "TargetState",
    "build_rewind_plan",
    "dry_run_rewind",
    "gather_rewind_facts",
    "grant_statements",
    "missing_segments",
    "parse_rewind_estimate",
    "parse_target_probe",
    "rewind_possible",
    "rewind_preconditions",
]
