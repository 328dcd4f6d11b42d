"""/status wording."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import (
    ClusterStatus,
    ReplicaView,
    WalSender,
)
from handlers.render.common import FAIL, INFO, OK, WARN, code, esc, human_bytes, human_seconds
from handlers.render.slotless import slotless_status_line


def status(clusters: Sequence[ClusterStatus]) -> str:
    """The /status reply for the selected clusters."""
    return "\n\n".join(_cluster_status(c) for c in clusters)


def _cluster_status(cluster: ClusterStatus) -> str:
    streaming = sum(1 for r in cluster.replicas if r.state == "streaming")
    total = len(cluster.replicas)
    lines: list[str] = []
    if cluster.primary is None:
        lines.append(
            f"{FAIL} <b>{esc(cluster.cluster)}</b>: primary {esc(cluster.primary_node)} is down"
        )
        lines.append(f"   reason: {esc(cluster.primary_down or 'unknown')}")
    else:
        p = cluster.primary
        icon = OK if streaming == total and not p.in_recovery else WARN
        lines.append(
            f"{icon} <b>{esc(cluster.cluster)}</b>: {streaming}/{total} replicas streaming"
        )
        role_note = " ⚠️ in recovery — not a primary!" if p.in_recovery else ""
        lines.append(
            f"<b>{esc(p.node)}</b> primary · up · PostgreSQL {esc(p.server_version or '?')}"
            f" · timeline {esc(p.timeline if p.timeline is not None else '–')}"
            f" · LSN {code(p.lsn or '–')}{role_note}"
        )
    for replica in cluster.replicas:
        lines.extend(_replica_lines(replica))
    for backup in cluster.backups:
        lines.append(
            f"⏳ base backup running: pid {esc(backup.pid)}"
            f" from {esc(backup.client_addr or 'local')}"
            f" ({esc(backup.state or '?')}, sent {code(backup.sent_lsn or '–')})"
        )
    for sender in cluster.unknown_senders:
        lines.append(
            f"{INFO} unconfigured standby {esc(sender.application_name or '?')}"
            f" from {esc(sender.client_addr or 'local')}: {esc(sender.state or '?')}"
            f", slot {esc(sender.slot_name or '–')}"
        )
    return "\n".join(lines)


def _replica_lines(replica: ReplicaView) -> list[str]:
    icon = {"streaming": OK, "down": FAIL, "absent": FAIL}.get(replica.state, WARN)
    head = f"{icon} <b>{esc(replica.node)}</b> replica · {esc(replica.state)}"
    if replica.slot:
        head += f" · slot {esc(replica.slot)}"
    lines = [head]
    if replica.slotless is not None:
        lines.append(slotless_status_line(replica.slotless))
    if replica.state == "down":
        lines.append(f"   reason: {esc(replica.down_reason or 'unknown')}")
        return lines
    sender = replica.sender
    if sender is not None:
        lines.append(f"   sync {esc(sender.sync_state or '–')} · {_lsns(sender)}")
        lines.append(
            f"   lag {esc(human_bytes(replica.lag_bytes))} · replay lag "
            f"{esc(human_seconds(replica.lag_seconds))}"
        )
    snapshot = replica.receiver
    if snapshot is not None:
        if not snapshot.in_recovery:
            lines.append(f"   {WARN} not in recovery: this node is a primary now")
        receiver = snapshot.receiver
        host = receiver.sender_host if receiver else None
        source = f"{host}:{receiver.sender_port}" if receiver and host else "–"
        lines.append(
            f"   receiver {esc((receiver.status if receiver else None) or 'not running')}"
            f" from {esc(source)}"
            f" · slot {esc((receiver.slot_name if receiver else None) or '–')}"
            f" · flushed {code((receiver.flushed_lsn if receiver else None) or '–')}"
            f" · replay delay {esc(human_seconds(snapshot.replay_delay_s))}"
        )
    return lines


def _lsns(sender: WalSender) -> str:
    parts = (sender.sent_lsn, sender.write_lsn, sender.flush_lsn, sender.replay_lsn)
    return "sent/write/flush/replay " + " / ".join(code(p or "–") for p in parts)
