"""What the bot knows about a replica's slot: is it protected, and how close to lost is it.

Pure functions over snapshots (no I/O) shared by /status, /check, the monitor rule and
/attachslot, plus :class:`SlotOverrides`, the bot's own record of slots attached or detached
from the chat. See :mod:`bot.services.slotless` for why slots matter.
"""

from __future__ import annotations

import dataclasses

from bot.config import ClusterConfig, NodeConfig
from bot.models import NodeRole, NodeSnapshot, SlotlessRisk, WalSender, lsn_int


def replica_position(sender: WalSender | None, replica: NodeSnapshot | None) -> str | None:
    """Where ``replica`` would resume streaming: what it has flushed, as the primary sees it
    (else its replay position, else None).

    The received (flushed) position is what counts for WAL removal, not the replayed one: a
    replica that replays slowly keeps what it received in its own ``pg_wal``.
    """
    if sender is not None:
        for lsn in (sender.flush_lsn, sender.replay_lsn):
            if lsn is not None:
                return lsn
    if replica is not None and replica.ok and replica.in_recovery and replica.lsn:
        if replica.receiver is not None and replica.receiver.flushed_lsn:
            return replica.receiver.flushed_lsn
        return replica.lsn
    return None


def protected_by_slot(replica: NodeConfig, primary: NodeSnapshot, sender: WalSender | None) -> bool:
    """True when a slot on ``primary`` keeps the WAL ``replica`` needs.

    Connected: its walsender holds a slot (a slot's ``active_pid`` is that walsender).
    Disconnected: the slot it is configured with exists and has not lost its WAL.
    """
    if sender is not None:
        return sender.slot_name is not None
    if replica.slot is None:
        return False
    slot = next((s for s in primary.slots if s.name == replica.slot), None)
    return slot is not None and slot.wal_status != "lost"


def slotless_risk(
    cluster: str,
    replica: NodeConfig,
    primary: NodeSnapshot | None,
    sender: WalSender | None,
    replica_snapshot: NodeSnapshot | None,
    last_position: str | None = None,
) -> SlotlessRisk | None:
    """The risk of a replica that no slot protects; None when a slot does (or the primary did
    not answer: nothing can be said then).

    ``last_position`` is the position seen at an earlier poll, used when neither the primary's
    walsender nor the replica itself tells it now (the replica is stopped).
    """
    if primary is None or not primary.ok or primary.in_recovery is not False:
        return None
    if protected_by_slot(replica, primary, sender):
        return None
    position = replica_position(sender, replica_snapshot) or last_position
    keep = primary.wal_keep
    oldest = keep.oldest_lsn if keep is not None else None
    kept = margin = None
    if oldest is not None and primary.lsn:
        kept = max(0, lsn_int(primary.lsn) - oldest)
        if position is not None:
            margin = lsn_int(position) - oldest
    return SlotlessRisk(
        cluster=cluster,
        node=replica.name,
        replay_lsn=position,
        oldest_segment=keep.oldest_segment if keep else None,
        kept_bytes=kept,
        margin_bytes=margin,
        wal_keep_size=keep.wal_keep_size if keep else None,
        archive_mode=keep.archive_mode if keep else None,
        waldir_readable=keep.waldir_readable if keep else None,
    )


class SlotOverrides:
    """Slots attached or detached from the chat, over the configuration (in memory).

    ``None`` records a detached slot: the replica has none, whatever the config says.
    """

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], str | None] = {}

    def set(self, cluster: str, node: str, slot: str | None) -> None:
        """Record that ``cluster``/``node`` now uses ``slot`` (None: no slot)."""
        self._slots[(cluster, node)] = slot

    def get(self, cluster: str, node: str) -> tuple[bool, str | None]:
        """(overridden?, slot)."""
        key = (cluster, node)
        return key in self._slots, self._slots.get(key)

    def apply(self, cluster: ClusterConfig) -> ClusterConfig:
        """``cluster`` with each replica's slot as the bot last set it."""
        if not any(c == cluster.name for c, _ in self._slots):
            return cluster
        nodes = tuple(
            dataclasses.replace(n, slot=self._slots[(cluster.name, n.name)])
            if (cluster.name, n.name) in self._slots and n.role is NodeRole.REPLICA
            else n
            for n in cluster.nodes
        )
        return dataclasses.replace(cluster, nodes=nodes)
