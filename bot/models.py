"""Immutable domain snapshots shared by services, adapters and renderers.

Nothing here talks to the network; every object is a frozen dataclass or an enum, so a
snapshot taken by a service can be rendered, logged or audited without surprises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Role(enum.IntEnum):
    """Chat roles, ordered: a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """Return the role named ``text`` (case-insensitive); ValueError if unknown."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(text) from None

    @property
    def label(self) -> str:
        """Lower-case name used in config and replies."""
        return self.name.lower()


class NodeRole(enum.StrEnum):
    """The role a node has in the configured topology."""

    PRIMARY = "primary"
    REPLICA = "replica"


class Outcome(enum.StrEnum):
    """The outcome of a command, as written to the audit log."""

    OK = "ok"
    REFUSED = "refused"
    FAILED = "failed"


class CheckLevel(enum.StrEnum):
    """Severity of one /check line."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class User:
    """A chat user as seen by the services: numeric id, display name, role (None = unknown)."""

    id: int
    name: str
    role: Role | None


@dataclass(frozen=True)
class WalSender:
    """One row of pg_stat_replication on the primary (a replica or a pg_basebackup)."""

    pid: int
    application_name: str
    client_addr: str | None
    state: str | None
    sent_lsn: str | None
    write_lsn: str | None
    flush_lsn: str | None
    replay_lsn: str | None
    write_lag_s: float | None
    flush_lag_s: float | None
    replay_lag_s: float | None
    sync_state: str | None
    slot_name: str | None
    replay_lag_bytes: int | None

    @property
    def is_basebackup(self) -> bool:
        """True for the walsenders of a running pg_basebackup (not a lagging replica)."""
        return self.state == "backup" or self.application_name == "pg_basebackup"


@dataclass(frozen=True)
class PrimaryStatus:
    """What the primary says about itself and its walsenders."""

    node: str
    in_recovery: bool
    server_version: str
    server_version_num: int
    timeline: int | None
    current_lsn: str | None
    walsenders: tuple[WalSender, ...]


@dataclass(frozen=True)
class WalReceiverStatus:
    """pg_stat_wal_receiver and replay position, read on a replica."""

    node: str
    in_recovery: bool
    server_version: str
    server_version_num: int
    receiver_status: str | None
    slot_name: str | None
    sender_host: str | None
    sender_port: int | None
    written_lsn: str | None
    flushed_lsn: str | None
    replay_lsn: str | None
    replay_delay_s: float | None


@dataclass(frozen=True)
class NodeDown:
    """A node that could not be reached, with the reason (never a secret)."""

    node: str
    reason: str


@dataclass(frozen=True)
class ReplicaView:
    """One configured replica as seen from both sides."""

    node: str
    slot: str | None
    state: str  # streaming | catchup | backup | absent | down | <pg state>
    sender: WalSender | None
    receiver: WalReceiverStatus | None
    down_reason: str | None = None

    @property
    def lag_bytes(self) -> int | None:
        """Bytes between the primary's current LSN and the replica's replay LSN."""
        return self.sender.replay_lag_bytes if self.sender else None

    @property
    def lag_seconds(self) -> float | None:
        """Replay lag in seconds; 0 when the replica has replayed everything sent (idle)."""
        if self.sender is None:
            return None
        if self.sender.replay_lag_s is not None:
            return self.sender.replay_lag_s
        if self.sender.replay_lsn is not None and self.sender.replay_lsn == self.sender.sent_lsn:
            return 0.0
        return None


@dataclass(frozen=True)
class ClusterStatus:
    """The /status snapshot of one cluster."""

    cluster: str
    primary_node: str
    primary: PrimaryStatus | None
    primary_down: str | None
    replicas: tuple[ReplicaView, ...]
    backups: tuple[WalSender, ...] = ()
    unknown_senders: tuple[WalSender, ...] = ()


@dataclass(frozen=True)
class SlotInfo:
    """One row of pg_replication_slots, with the WAL it retains."""

    name: str
    slot_type: str
    active: bool
    active_pid: int | None
    restart_lsn: str | None
    retained_bytes: int | None
    wal_status: str | None
    safe_wal_size: int | None
    inactive_since: datetime | None = None
    invalidation_reason: str | None = None
    used_by: str | None = None  # configured replica that names this slot

    @property
    def at_risk(self) -> bool:
        """True when the server may already have removed, or is about to remove, needed WAL."""
        return self.wal_status in {"extended", "unreserved", "lost"} or (
            self.invalidation_reason is not None
        )


@dataclass(frozen=True)
class ClusterSlots:
    """The /slots snapshot of one cluster."""

    cluster: str
    primary_node: str
    slots: tuple[SlotInfo, ...]
    error: str | None = None


@dataclass(frozen=True)
class HbaRule:
    """One line of pg_hba_file_rules."""

    line_number: int
    type: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    address: str | None
    auth_method: str
    error: str | None = None


@dataclass(frozen=True)
class CheckItem:
    """One prerequisite check: level, what was checked, what was found, how to fix it."""

    node: str
    name: str
    level: CheckLevel
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class ClusterCheck:
    """The /check result of one cluster."""

    cluster: str
    items: tuple[CheckItem, ...]

    @property
    def worst(self) -> CheckLevel:
        """The most severe level among the items."""
        levels = {item.level for item in self.items}
        for level in (CheckLevel.FAIL, CheckLevel.WARN):
            if level in levels:
                return level
        return CheckLevel.OK


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log (append-only, hash-chained)."""

    id: int
    at: datetime
    user_id: int | None
    user_name: str
    chat_id: int | None
    command: str
    args: str
    outcome: Outcome
    reason: str
    duration_ms: int


@dataclass(frozen=True)
class AuditRecord:
    """An audit row to be written (id, time and hashes are assigned by the log)."""

    user_id: int | None
    user_name: str
    chat_id: int | None
    command: str
    args: str
    outcome: Outcome
    reason: str = ""
    duration_ms: int = 0


@dataclass(frozen=True)
class AuditVerification:
    """The result of walking the audit hash chain."""

    rows: int
    ok: bool
    first_bad_id: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class PendingConfirmation:
    """A confirmation button waiting to be pressed."""

    nonce: str
    user_id: int
    action: str
    params: dict[str, str] = field(default_factory=dict)
    expires_at: float = 0.0
    other_user: bool = False  # a second approver: anyone but the requester must press it


# --- rebuild ---------------------------------------------------------------------------------


class RebuildState(enum.StrEnum):
    """Life of a rebuild job. The per-node lock is held in the ACTIVE states."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"  # failed or cancelled, old replica restored
    ROLLBACK_FAILED = "rollback_failed"  # needs a human; lock held
    INTERRUPTED = "interrupted"  # bot stopped mid-job; lock held until rollback/abandon
    ABANDONED = "abandoned"  # an admin released the lock after fixing things by hand

    @property
    def holds_lock(self) -> bool:
        """True while no other rebuild of the node may start."""
        return self in {
            RebuildState.RUNNING,
            RebuildState.ROLLBACK_FAILED,
            RebuildState.INTERRUPTED,
        }


class StepKind(enum.StrEnum):
    """Where a plan step runs."""

    SQL = "sql"  # on the primary, as the bot's role
    REMOTE = "remote"  # on the replica host, over SSH (or locally in the demo)
    CHECK = "check"  # the bot polls until a condition holds


@dataclass(frozen=True)
class PlanStep:
    """One step of a rebuild, printable exactly as it will run."""

    key: str
    title: str
    kind: StepKind
    text: str


@dataclass(frozen=True)
class RebuildPlan:
    """Everything a rebuild of one replica will do, in order."""

    cluster: str
    node: str
    host: str
    data_dir: str
    old_dir: str
    failed_dir: str
    slot: str
    rollback_slot: str
    steps: tuple[PlanStep, ...]


@dataclass(frozen=True)
class PreflightReport:
    """All preflight checks of one rebuild; ``ok`` when none failed."""

    cluster: str
    node: str
    items: tuple[CheckItem, ...]
    slot_missing: bool = False
    primary_size_bytes: int | None = None

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return all(item.level is not CheckLevel.FAIL for item in self.items)


@dataclass(frozen=True)
class BackupProgress:
    """pg_basebackup's own progress line: done/total kB and percent."""

    done_kb: int
    total_kb: int
    percent: int


@dataclass(frozen=True)
class RebuildProgress:
    """What a running rebuild reports to whoever watches it."""

    job_id: int
    cluster: str
    node: str
    step: str
    step_index: int
    step_count: int
    state: RebuildState
    backup: BackupProgress | None = None
    rate_bytes_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    detail: str = ""
    output: str = ""  # tail of the failing command's output / server log, on failures
    old_dir: str = ""


@dataclass(frozen=True)
class RebuildJob:
    """A persisted rebuild job (one row of rebuild_jobs)."""

    id: int
    cluster: str
    node: str
    state: RebuildState
    step: str
    requested_by: int
    confirmed_by: int | None
    old_dir: str
    failed_dir: str
    rollback_slot: str
    started_at: float
    updated_at: float
    detail: str = ""


@dataclass(frozen=True)
class CommandResult:
    """Exit status and output of one remote command (255 when killed by a signal)."""

    exit_status: int
    stdout: str
    stderr: str
