"""Immutable domain snapshots shared by services, adapters and renderers.

Nothing here talks to the network; every object is a frozen dataclass or an enum, so a
snapshot taken by a service can be rendered, logged or audited without surprises.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.phrases import Phrase

if TYPE_CHECKING:
    from bot.services.plans.model import Step


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
    INTENT = "intent"  # written before a state-changing action runs; its outcome row follows


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
        """True for the walsender sending a base backup (state ``backup``).

        Never judged by application_name alone: a replica made by ``pg_basebackup -R`` with
        that name streams under it (state ``streaming``) and is a replica. The WAL stream of
        a running ``pg_basebackup --wal-method=stream`` is found by :func:`basebackup_pids`.
        """
        return self.state == "backup"


def basebackup_pids(senders: Sequence[WalSender]) -> frozenset[int]:
    """PIDs of the walsenders that belong to a running pg_basebackup.

    The one in state ``backup`` sends the files; with ``--wal-method=stream`` a second
    connection of the same client (same application_name and address) streams WAL, often
    through the slot of the replica being rebuilt. That stream never reports a replay
    position (a real standby does), which tells it from a standby of the same name.
    """
    backups = [s for s in senders if s.is_basebackup]
    clients = {(s.application_name, s.client_addr) for s in backups}
    streams = [
        s
        for s in senders
        if not s.is_basebackup
        and s.replay_lsn is None
        and (s.application_name, s.client_addr) in clients
    ]
    return frozenset(s.pid for s in (*backups, *streams))


def replay_lag_seconds(sender: WalSender) -> float | None:
    """The one replay-lag definition (seconds) of /status, the alert rules and the metrics.

    0 when the replica replayed everything it was sent or flushed: PostgreSQL keeps (or NULLs)
    ``replay_lag`` on an idle system, and ``now() - pg_last_xact_replay_timestamp()`` grows
    forever when nothing is written; neither is lag. None while the replay LSN is unknown.
    """
    if sender.replay_lsn is None:
        return None
    if sender.replay_lsn in {sender.sent_lsn, sender.flush_lsn}:
        return 0.0
    return sender.replay_lag_s


@dataclass(frozen=True)
class ReplicaView:
    """One configured replica as seen from both sides."""

    node: str
    slot: str | None
    state: str  # streaming | catchup | backup | absent | down | <pg state>
    sender: WalSender | None
    receiver: NodeSnapshot | None  # the replica's own probe (None when it did not answer)
    down_reason: str | None = None
    slotless: SlotlessRisk | None = None  # set when no slot protects this replica

    @property
    def lag_bytes(self) -> int | None:
        """Bytes between the primary's current LSN and the replica's replay LSN."""
        return self.sender.replay_lag_bytes if self.sender else None

    @property
    def lag_seconds(self) -> float | None:
        """Replay lag in seconds (:func:`replay_lag_seconds`; 0 on an idle replica)."""
        return replay_lag_seconds(self.sender) if self.sender else None


@dataclass(frozen=True)
class ClusterStatus:
    """The /status snapshot of one cluster."""

    cluster: str
    primary_node: str
    primary: NodeSnapshot | None
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
    """One prerequisite check: level, what was checked, what was found, how to fix it.

    ``name`` is a stable key (a PostgreSQL setting name, or a label the rendering layer
    words); ``detail`` and ``fix`` are :class:`~bot.phrases.Phrase` values (``check.*``,
    ``preflight.*``), worded by handlers/render/check.py. ``notes`` are further clauses of
    the detail, shown after it, each separated by "; ".
    """

    node: str
    name: str
    level: CheckLevel
    detail: Phrase
    fix: Phrase | None = None
    notes: tuple[Phrase, ...] = ()


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
class AuditHead:
    """The newest row of the audit chain: an anchor to keep outside the database."""

    rows: int
    hash: str

    def __str__(self) -> str:
        return f"{self.rows}:{self.hash}"


@dataclass(frozen=True)
class AuditVerification:
    """The result of walking the audit hash chain."""

    rows: int
    ok: bool
    first_bad_id: int | None = None
    problem: str | None = None
    head: AuditHead | None = None  # the newest row (None for an empty log)
    unkeyed_rows: int = 0  # rows 1..N written before the chain was keyed (older releases)


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


@dataclass(frozen=True)
class RebuildPlan:
    """Everything a rebuild of one replica will do, in order: typed steps of the one plan
    model (:mod:`bot.services.plans.model`), shown and run as they are."""

    cluster: str
    node: str
    host: str
    data_dir: str
    old_dir: str
    failed_dir: str
    slot: str
    rollback_slot: str
    steps: tuple[Step, ...]
    # id of the node's newest job when the plan was made (0: none); a confirmation is refused
    # when another job of the node ran since.
    previous_job: int = 0
    application_name: str = ""
    sync_state: str = ""  # the replica's sync_state before the rebuild ("" when unknown)


@dataclass(frozen=True)
class PreflightReport:
    """All preflight checks of one rebuild; ``ok`` when none failed."""

    cluster: str
    node: str
    items: tuple[CheckItem, ...]
    slot_missing: bool = False
    primary_size_bytes: int | None = None
    application_name: str = ""  # the name the replica streamed under ("" when not seen)
    sync_state: str = ""  # its sync_state then

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return self.first_failure is None

    @property
    def first_failure(self) -> CheckItem | None:
        """The first failed check, if any."""
        return next((i for i in self.items if i.level is CheckLevel.FAIL), None)


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
    # what the chat words (handlers/render/rebuild.py): the running step's title, and the
    # ending's parts (joined with "; "); ``detail`` keeps their language-neutral form
    title: Phrase | None = None
    said: tuple[Phrase, ...] = ()


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
    # "device:inode" of the data directory this job moved aside, recorded before the rename;
    # a rollback moves a directory back only when it is that very directory.
    moved_id: str = ""
    kind: str = "rebuild"  # or the repair path ("repair.resume", ...): same lock, own rollback


@dataclass(frozen=True)
class CommandResult:
    """Exit status and output of one remote command (255 when killed by a signal)."""

    exit_status: int
    stdout: str
    stderr: str


# --- monitor and alerts ----------------------------------------------------------------------

FigureValue = int | float | str | bool | None


class Severity(enum.StrEnum):
    """How bad a firing alert is."""

    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for warning, 1 for critical: escalation is a rank going up."""
        return 1 if self is Severity.CRITICAL else 0


class AlertRule(enum.StrEnum):
    """The monitor's rules; each alert is one rule on one node (and slot)."""

    NODE_DOWN = "node_down"
    CLUSTER_UNREACHABLE = "cluster_unreachable"
    NOT_STREAMING = "not_streaming"
    BYTE_LAG = "byte_lag"
    TIME_LAG = "time_lag"
    SLOT_INACTIVE = "slot_inactive"
    SLOT_RETAINED = "slot_retained"
    SLOT_AT_RISK = "slot_at_risk"
    ROLE_MISMATCH = "role_mismatch"
    ROLE_CHANGE = "role_change"  # an event: pg_is_in_recovery() flipped
    TIMELINE_CHANGE = "timeline_change"  # an event: the node's timeline changed
    SLOTLESS_WAL = "slotless_wal"  # replica without a slot close to the oldest WAL kept


@dataclass(frozen=True)
class ReceiverInfo:
    """pg_stat_wal_receiver of a replica, as the monitor reads it."""

    status: str | None
    slot_name: str | None
    received_tli: int | None
    flushed_lsn: str | None
    sender_host: str | None
    sender_port: int | None
    written_lsn: str | None = None


@dataclass(frozen=True)
class NodeSnapshot:
    """One probe of one node: the only model of a node's replication state.

    /status, /slots, rebuild preflight and verify, and the monitor all read a node through
    the same statement into this (or the reason it failed, ``error``, for the monitor).
    ``lsn`` is the current WAL position on a primary and the replayed one on a replica;
    ``replay_delay_s`` (replicas) is how long ago the last replayed transaction committed,
    0 when everything received is replayed.
    """

    cluster: str
    node: str
    at: float  # wall-clock seconds when the poll started
    duration_s: float = 0.0
    error: str | None = None
    in_recovery: bool | None = None
    server_version_num: int | None = None
    timeline: int | None = None
    lsn: str | None = None
    walsenders: tuple[WalSender, ...] = ()
    slots: tuple[SlotInfo, ...] = ()
    receiver: ReceiverInfo | None = None
    server_version: str | None = None  # e.g. "16.4 (Debian 16.4-1)"
    replay_delay_s: float | None = None
    wal_keep: WalKeep | None = None  # primaries only: what keeps WAL for slotless replicas

    @property
    def ok(self) -> bool:
        """True when the poll answered."""
        return self.error is None


@dataclass(frozen=True)
class NodeFacts:
    """What a node was last seen as, to notice a role or timeline change (kept across restarts)."""

    in_recovery: bool
    timeline: int | None


@dataclass(frozen=True)
class Condition:
    """Something wrong that one poll of a cluster found (the output of the pure rules).

    It turns into a firing alert once it held for ``polls`` consecutive polls and ``hold_s``
    seconds (counted from ``since`` when the server knows when it began). ``event`` conditions
    (role or timeline change) are announced once and never fire or resolve.
    """

    cluster: str
    node: str
    rule: AlertRule
    severity: Severity
    subject: str = ""  # e.g. the slot name
    figures: dict[str, FigureValue] = field(default_factory=dict)
    polls: int = 1
    hold_s: float = 0.0
    since: float | None = None
    repeat: bool = True
    event: bool = False

    @property
    def key(self) -> str:
        """Identity of the alert: cluster/node/rule[/subject]."""
        return alert_key(self.cluster, self.node, self.rule, self.subject)


def alert_key(cluster: str, node: str, rule: AlertRule, subject: str = "") -> str:
    """cluster/node/rule[/subject]: one alert per key fires at a time."""
    key = f"{cluster}/{node}/{rule.value}"
    return f"{key}/{subject}" if subject else key


class AlertState(enum.StrEnum):
    """Life of a stored alert."""

    FIRING = "firing"
    RESOLVED = "resolved"
    EVENT = "event"  # a one-off notice (role / timeline change)


@dataclass(frozen=True)
class Alert:
    """A stored alert: a condition that fired, with its history (times are epoch seconds)."""

    id: int
    cluster: str
    node: str
    rule: AlertRule
    subject: str
    severity: Severity
    figures: dict[str, FigureValue]
    state: AlertState
    first_seen: float
    fired_at: float
    announced_at: float | None = None  # None while a mute kept it from being announced
    last_sent_at: float | None = None
    resolved_at: float | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    muted_until: float | None = None
    repeat: bool = True

    @property
    def key(self) -> str:
        """cluster/node/rule[/subject]."""
        return alert_key(self.cluster, self.node, self.rule, self.subject)


@dataclass(frozen=True)
class Mute:
    """Silence for a whole cluster (``node`` None) or one node, until ``until``."""

    id: int
    cluster: str
    node: str | None
    until: float
    by: str
    created_at: float

    def covers(self, cluster: str, node: str) -> bool:
        """True when an alert of ``cluster``/``node`` falls under this mute."""
        return self.cluster == cluster and (self.node is None or self.node == node)


class NoticeKind(enum.StrEnum):
    """Why an alert message is sent."""

    FIRING = "firing"
    REPEAT = "repeat"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    EVENT = "event"


@dataclass(frozen=True)
class AlertNotice:
    """One alert in an outgoing message, and why it is there."""

    kind: NoticeKind
    alert: Alert
    at: float


@dataclass(frozen=True)
class MessageButton:
    """An inline button of an outgoing message: label and callback data (≤ 64 bytes)."""

    label: str
    data: str


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered message: Telegram-HTML text and rows of buttons."""

    html: str
    buttons: tuple[tuple[MessageButton, ...], ...] = ()
    chart: ChartRef | None = None  # a small chart to attach (alerts about lag or slots)


@dataclass(frozen=True)
class OutboxItem:
    """A message waiting in the persistent outbox for one chat (and forum topic)."""

    id: int
    chat_id: int
    thread_id: int | None
    message: OutgoingMessage
    created_at: float
    attempts: int = 0


# --- replicas without a slot -----------------------------------------------------------------


def lsn_int(lsn: str) -> int:
    """'0/3000060' -> 50331744 (byte position in the WAL)."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class WalKeep:
    """What protects a replica without a slot on a primary: the WAL it still has.

    ``oldest_segment`` is the oldest WAL segment file in the primary's ``pg_wal``
    (``pg_ls_waldir()``; None when the bot's role may not call it — it needs ``pg_monitor``
    or an explicit ``GRANT EXECUTE``). A replica whose replay position is before its start
    can no longer catch up by streaming.
    """

    wal_keep_size: int  # bytes
    segment_size: int  # bytes
    archive_mode: str  # off | on | always
    waldir_readable: bool
    oldest_segment: str | None = None

    @property
    def oldest_lsn(self) -> int | None:
        """Byte position where the oldest segment in pg_wal starts (None when unknown)."""
        name = self.oldest_segment
        if name is None or len(name) != 24 or self.segment_size <= 0:
            return None
        try:
            log, seg = int(name[8:16], 16), int(name[16:24], 16)
        except ValueError:
            return None
        return log * 0x100000000 + seg * self.segment_size

    @property
    def archiving(self) -> bool:
        """True when archive_mode is on (a restore_command could still fetch removed WAL)."""
        return self.archive_mode in {"on", "always"}


@dataclass(frozen=True)
class SlotlessRisk:
    """A configured replica that streams (or would stream) without a slot, and its margin.

    ``kept_bytes`` = primary's current LSN − start of its oldest WAL segment; ``margin_bytes``
    = replica's replay position − that start (negative: the WAL it needs is gone).
    """

    cluster: str
    node: str
    replay_lsn: str | None
    oldest_segment: str | None
    kept_bytes: int | None
    margin_bytes: int | None
    wal_keep_size: int | None
    archive_mode: str | None
    waldir_readable: bool | None

    @property
    def lost(self) -> bool:
        """True when the replica needs WAL the primary no longer has."""
        return self.margin_bytes is not None and self.margin_bytes < 0


# --- monitor history and charts --------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaSample:
    """One poll of one replica as its primary sees it (None: not known at that poll)."""

    cluster: str
    replica: str
    at: float  # epoch seconds
    lag_bytes: int | None
    lag_s: float | None
    streaming: bool


@dataclass(frozen=True)
class SlotSample:
    """One poll of one slot on a primary: the WAL it retains."""

    cluster: str
    slot: str
    at: float
    retained_bytes: int | None


@dataclass(frozen=True)
class History:
    """A cluster's recorded samples since some time, oldest first."""

    replicas: tuple[ReplicaSample, ...] = ()
    slots: tuple[SlotSample, ...] = ()


@dataclass(frozen=True)
class ChartRef:
    """Which chart: a cluster, optionally narrowed to one replica, over ``window_s``."""

    cluster: str
    node: str | None = None
    window_s: float = 6 * 3600.0


@dataclass(frozen=True)
class ChartLabels:
    """The words on a chart (the rendering layer writes them, in the reply's language)."""

    title: str
    lag_bytes_axis: str
    lag_seconds_axis: str
    retained_axis: str
    time_axis: str
    warning: str
    critical: str
    outage: str
    no_data: str
    day_format: str = "%d %b"  # strftime of the time axis on windows longer than two days


@dataclass(frozen=True)
class ChartLimits:
    """The alert thresholds drawn on a chart."""

    lag_bytes_warning: int
    lag_bytes_critical: int
    lag_s_warning: float
    lag_s_critical: float
    retained_warning: int
    retained_critical: int


@dataclass(frozen=True)
class ChartData:
    """Everything a chart renderer draws: series per replica and slot, limits, labels."""

    ref: ChartRef
    start: float
    end: float
    replicas: tuple[tuple[str, tuple[ReplicaSample, ...]], ...]
    slots: tuple[tuple[str, tuple[SlotSample, ...]], ...]
    limits: ChartLimits
    labels: ChartLabels
    width_px: int = 1000
    height_px: int = 600

    def outages(self) -> list[tuple[float, float]]:
        """(start, end) of each run of "not streaming" polls, per replica: from the first such
        poll to the next streaming one (or to the last poll, if the run lasts to the end)."""
        spans: list[tuple[float, float]] = []
        for _, series in self.replicas:
            began: float | None = None
            for sample in series:
                if not sample.streaming and began is None:
                    began = sample.at
                elif sample.streaming and began is not None:
                    spans.append((began, sample.at))
                    began = None
            if began is not None:
                spans.append((began, max(series[-1].at, began)))
        return spans


@dataclass(frozen=True)
class ChartSummary:
    """What a chart shows, in numbers, for its caption: the worst replica's byte lag."""

    ref: ChartRef
    samples: int
    replica: str | None = None  # the replica whose lag peaked highest
    peak_bytes: int | None = None
    peak_at: float | None = None
    now_bytes: int | None = None
    streaming_now: bool | None = None
    outage_s: float = 0.0  # time the window shows some replica not streaming
