"""Protocols the services depend on; adapters implement them, tests fake them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from bot.config import NodeConfig
from bot.models import (
    Alert,
    AlertNotice,
    AuditEntry,
    AuditRecord,
    AuditVerification,
    ChartData,
    CommandResult,
    HbaRule,
    History,
    Mute,
    NodeFacts,
    NodeSnapshot,
    OutboxItem,
    OutgoingMessage,
    RebuildJob,
    RebuildState,
    ReplicaSample,
    SlotSample,
)


class Postgres(Protocol):
    """Read and manage replication state on one node. Raises NodeUnavailable / SlotError."""

    async def snapshot(self, node: NodeConfig) -> NodeSnapshot:
        """The node's replication state through the one probe statement (the monitor's):
        role, version, timeline, LSNs, walsenders, slots and WAL receiver."""
        ...

    async def settings(self, node: NodeConfig, names: Sequence[str]) -> dict[str, str]:
        """Current values of the named settings (missing names are absent)."""
        ...

    async def replication_hba_rules(self, node: NodeConfig) -> list[HbaRule] | None:
        """pg_hba lines that allow replication; None when the role may not read them."""
        ...

    async def usage_counts(self, node: NodeConfig) -> tuple[int, int]:
        """(walsenders in use, replication slots in use)."""
        ...

    async def create_physical_slot(self, node: NodeConfig, slot: str) -> None:
        """Create a physical slot; SlotAlreadyExists if it exists."""
        ...

    async def drop_slot(self, node: NodeConfig, slot: str) -> None:
        """Drop a slot; SlotNotFound / SlotActive when refused."""
        ...

    async def copy_physical_slot(self, node: NodeConfig, source: str, target: str) -> None:
        """pg_copy_physical_replication_slot(source, target): the copy keeps source's WAL."""
        ...

    async def total_database_size(self, node: NodeConfig) -> int:
        """Sum of pg_database_size over all databases, in bytes."""
        ...

    async def auto_conf_settings(self, node: NodeConfig, names: Sequence[str]) -> dict[str, str]:
        """Settings whose value comes from postgresql.auto.conf (they travel with a backup)."""
        ...

    async def execute(
        self, node: NodeConfig, statement: str, params: Sequence[str | int] = ()
    ) -> list[tuple[object, ...]]:
        """Run one plan statement (values bound client-side, so utility statements such as
        ``ALTER SYSTEM SET x = %s`` work; autocommit); its rows. ServerRefused if refused."""
        ...

    async def missing_alter_system_privileges(self, node: NodeConfig, parameter: str) -> list[str]:
        """What the bot's role lacks to ``ALTER SYSTEM SET parameter`` and reload on ``node``
        (PostgreSQL 15+: the grants; 14: superuser); empty when it may."""
        ...

    async def run_plan_sql(
        self, node: NodeConfig, statement: str, params: Sequence[str | int]
    ) -> None:
        """Run one statement of a plan step (values bound client-side, so utility statements
        such as ``ALTER SYSTEM SET x = %s`` work); ServerRefused carries the SQLSTATE."""
        ...


class AuditLog(Protocol):
    """Append-only audit storage."""

    async def append(self, record: AuditRecord) -> None:
        """Write one row (hash-chained to the previous one)."""
        ...

    async def recent(self, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` rows, newest first."""
        ...

    async def verify(self) -> AuditVerification:
        """Walk the hash chain and report the first broken row."""
        ...


class Clock(Protocol):
    """Time source; tests inject a fake."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake returns at once and moves its time forward)."""
        ...


class RemoteShell(Protocol):
    """Commands on a replica's host (SSH, or the local host in the demo).

    ``run`` never raises for a non-zero exit; it raises RemoteError when the connection fails
    or the command times out. ``stream`` runs under a PTY, so closing it (cancellation, a
    dropped connection) hangs up the whole process group, pg_basebackup's WAL child included.
    """

    label: str

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run one shell command line and collect its output."""
        ...

    async def stream(
        self, command: str, on_output: Callable[[str], Awaitable[None]], timeout: float | None
    ) -> CommandResult:
        """Run a long command, passing output chunks to ``on_output`` as they arrive."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


class ShellConnector(Protocol):
    """Opens a RemoteShell to a node's host."""

    async def connect(self, node: NodeConfig) -> RemoteShell:
        """Connect (host keys verified) or raise RemoteError."""
        ...


class JobStore(Protocol):
    """Persistent rebuild jobs; the per-node lock survives restarts."""

    async def create(
        self,
        cluster: str,
        node: str,
        requested_by: int,
        confirmed_by: int | None,
        old_dir: str,
        failed_dir: str,
        rollback_slot: str,
        kind: str = "rebuild",
    ) -> RebuildJob:
        """Insert a RUNNING job; RebuildRefused if the node's lock is held. ``kind``
        "rebuild", or the repair path holding the same per-node lock."""
        ...

    async def update(
        self,
        job_id: int,
        *,
        state: RebuildState | None = None,
        step: str | None = None,
        detail: str | None = None,
        moved_id: str | None = None,
    ) -> RebuildJob:
        """Record progress or a new state; ``moved_id`` is the identity ("device:inode") of the
        data directory the job is about to move aside, recorded before the rename."""
        ...

    async def holding_lock(self, cluster: str, node: str) -> RebuildJob | None:
        """The job that holds the node's lock, if any."""
        ...

    async def latest(self, cluster: str, node: str) -> RebuildJob | None:
        """The newest job of the node."""
        ...

    async def in_state(self, state: RebuildState) -> list[RebuildJob]:
        """All jobs in ``state``, oldest first."""
        ...


class SlotOverrideStore(Protocol):
    """Where the bot keeps the slots it attached or detached, so a restart remembers them."""

    async def load(self) -> list[tuple[str, str, str | None]]:
        """Every (cluster, node, slot) recorded; slot None: detached, the replica has none."""
        ...

    async def save(self, cluster: str, node: str, slot: str | None) -> None:
        """Record ``cluster``/``node``'s slot now (replacing what was recorded)."""
        ...


# --- monitor and alerts ----------------------------------------------------------------------


class MonitorProbe(Protocol):
    """Reads one node's whole replication state in one round trip (raises NodeUnavailable)."""

    async def poll(self, cluster: str, node: NodeConfig) -> NodeSnapshot:
        """One poll of ``node``, bounded by the probe's timeout."""
        ...

    async def close(self) -> None:
        """Close every connection the probe keeps."""
        ...


class AlertTransaction(Protocol):
    """Writes that become visible together (alert state and the messages announcing it)."""

    async def insert_alert(self, alert: Alert) -> Alert:
        """Store a new alert; returns it with its id."""
        ...

    async def update_alert(self, alert: Alert) -> None:
        """Replace the stored alert with the same id."""
        ...

    async def enqueue(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        """Put a message into the outbox; returns its id."""
        ...

    async def set_facts(self, cluster: str, node: str, facts: NodeFacts) -> None:
        """Remember a node's role and timeline."""
        ...


class AlertStore(Protocol):
    """Persistent alert state, mutes and node facts (and, in the same database, the outbox)."""

    def transaction(self) -> AbstractAsyncContextManager[AlertTransaction]:
        """All writes inside commit together or not at all."""
        ...

    async def firing(self) -> list[Alert]:
        """Every alert in the firing state, oldest first."""
        ...

    async def get(self, alert_id: int) -> Alert | None:
        """One alert by id."""
        ...

    async def facts(self) -> dict[tuple[str, str], NodeFacts]:
        """(cluster, node) -> last seen role and timeline."""
        ...

    async def mutes(self, now: float) -> list[Mute]:
        """Cluster and node mutes still in force at ``now``."""
        ...

    async def add_mute(
        self, cluster: str, node: str | None, until: float, by: str, now: float
    ) -> Mute:
        """Silence a cluster or a node until ``until``."""
        ...

    async def remove_mutes(self, cluster: str, node: str | None, now: float) -> int:
        """End the mutes of a cluster (all of its mutes) or of one node; returns how many."""
        ...


class Outbox(Protocol):
    """Messages waiting to be delivered, in order per chat; a sent row is never sent again."""

    async def pending_chats(self) -> list[int]:
        """Chats that have unsent messages."""
        ...

    async def next_pending(self, chat_id: int) -> OutboxItem | None:
        """The oldest unsent message of ``chat_id``."""
        ...

    async def mark_sent(self, item_id: int, message_id: int, at: float) -> None:
        """Record a successful delivery."""
        ...

    async def record_failure(self, item_id: int, error: str, final: bool) -> None:
        """Count a failed attempt; ``final`` gives the message up (rejected by Telegram)."""
        ...

    async def pending_count(self) -> int:
        """Unsent messages over all chats."""
        ...

    async def move_chat(self, old_chat_id: int, new_chat_id: int, at: float) -> int:
        """The group became a supergroup: remember the new id (later enqueues for the old id
        use it) and move the old id's unsent messages there; returns how many moved."""
        ...

    async def chat_moves(self) -> dict[int, int]:
        """Old chat id -> the id it became."""
        ...

    async def refuse(
        self,
        item_id: int,
        error: str,
        chat_id: int,
        at: float,
        requeue: Sequence[tuple[int, int | None, OutgoingMessage]],
        notices: Sequence[tuple[int, int | None, OutgoingMessage]],
    ) -> bool:
        """In one transaction: give the message up, queue ``requeue``, and — if ``chat_id`` was
        not known to refuse the bot yet — record it and queue ``notices``. True if newly."""
        ...

    async def refusing_chats(self) -> dict[int, str]:
        """Chats known to refuse the bot -> the reason Telegram gave."""
        ...

    async def clear_refusal(self, chat_id: int) -> bool:
        """The chat took a message again; True if it had been refusing."""
        ...


class Notifier(Protocol):
    """Sends alert messages to a chat (Telegram, or the demo's console)."""

    async def send(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        """Deliver ``message``; return its message id. Raises DeliveryError subclasses."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class DeliveryFormatter(Protocol):
    """Words the delivery service's own messages (implemented next to the renderers)."""

    def chat_refusing(self, chat_id: int, reason: str, fallback: int | None) -> OutgoingMessage:
        """The notice to the other alert chats that ``chat_id`` refuses the bot."""
        ...

    def redirected(self, chat_id: int, message: OutgoingMessage) -> list[OutgoingMessage]:
        """``message`` (refused by ``chat_id``) for the fallback chat, naming that chat."""
        ...


class AlertFormatter(Protocol):
    """Words alert notices as messages (implemented next to the renderers)."""

    def messages(self, notices: Sequence[AlertNotice]) -> list[OutgoingMessage]:
        """One message for the notices (more only if it would exceed Telegram's limit)."""
        ...


class HistoryStore(Protocol):
    """The monitor's bounded history of replica lag and slot WAL (downsampled as it ages)."""

    async def record(self, replicas: Sequence[ReplicaSample], slots: Sequence[SlotSample]) -> None:
        """Store one poll's samples (one transaction)."""
        ...

    async def history(self, cluster: str, since: float) -> History:
        """The cluster's samples since ``since``, oldest first."""
        ...

    async def compact(self, now: float) -> tuple[int, int]:
        """Downsample old polls and drop expired points: (folded, deleted)."""
        ...


class ChartRenderer(Protocol):
    """Draws a chart; synchronous and CPU-bound (callers run it in a worker thread)."""

    def render_png(self, data: ChartData) -> bytes:
        """The chart as a PNG of ``data.width_px`` x ``data.height_px`` pixels."""
        ...


@runtime_checkable
class PhotoNotifier(Protocol):
    """A Notifier that can also send a picture (alert charts)."""

    async def send_photo(
        self,
        chat_id: int,
        thread_id: int | None,
        png: bytes,
        caption_html: str,
        reply_to: int | None = None,
    ) -> int:
        """Send ``png`` with a caption; return the message id. Raises the delivery errors."""
        ...


class LanguageStore(Protocol):
    """The reply language each Telegram user chose with /lang (persisted)."""

    async def get(self, user_id: int) -> str | None:
        """The language ``user_id`` chose, or None."""
        ...

    async def set(self, user_id: int, language: str) -> None:
        """Remember ``language`` for ``user_id``."""
        ...
