"""Protocols the services depend on; adapters implement them, tests fake them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.config import NodeConfig
from bot.models import (
    AuditEntry,
    AuditRecord,
    AuditVerification,
    HbaRule,
    PrimaryStatus,
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
