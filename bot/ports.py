"""Protocols the services depend on; adapters implement them, tests fake them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bot.config import NodeConfig
from bot.models import (
    AuditEntry,
    AuditRecord,
    AuditVerification,
    CommandResult,
    HbaRule,
    PrimaryStatus,
    RebuildJob,
    RebuildState,
    SlotInfo,
    WalReceiverStatus,
)


class Postgres(Protocol):
    """Read and manage replication state on one node. Raises NodeUnavailable / SlotError."""

    async def primary_status(self, node: NodeConfig) -> PrimaryStatus:
        """pg_is_in_recovery, version, timeline, current LSN and pg_stat_replication."""
        ...

    async def replica_status(self, node: NodeConfig) -> WalReceiverStatus:
        """pg_stat_wal_receiver and replay position of a replica."""
        ...

    async def slots(self, node: NodeConfig) -> list[SlotInfo]:
        """pg_replication_slots with retained WAL, adapted to the server version."""
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
    ) -> RebuildJob:
        """Insert a RUNNING job; RebuildRefused if the node's lock is held."""
        ...

    async def update(
        self,
        job_id: int,
        *,
        state: RebuildState | None = None,
        step: str | None = None,
        detail: str | None = None,
    ) -> RebuildJob:
        """Record progress or a new state."""
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
