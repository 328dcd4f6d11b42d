"""/status wording."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import (
    ClusterStatus,
    ReplicaView,
    WalSender,
)
from handlers.i18n import _, ngettext
from handlers.render.common import FAIL, INFO, OK, WARN, code, esc, human_bytes, human_seconds
from handlers.render.phrases import reason_text
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
            f"{FAIL} <b>{esc(cluster.cluster)}</b>: "
            + _("primary {node} is down").format(node=esc(cluster.primary_node))
        )
        lines.append(
            "   "
            + _("reason: {reason}").format(
                reason=esc(reason_text(cluster.primary_down) or _("unknown"))
            )
        )
    else:
        p = cluster.primary
        icon = OK if streaming == total and not p.in_recovery else WARN
        lines.append(
            f"{icon} <b>{esc(cluster.cluster)}</b>: "
            + ngettext(
                # English keeps "replicas" (of the total); Russian declines it by the total
                "{streaming}/{total} replicas streaming",
                "{streaming}/{total} replicas streaming",
                total,
            ).format(streaming=streaming, total=total)
        )
        role_note = " ⚠️ " + _("in recovery — not a primary!") if p.in_recovery else ""
        lines.append(
            f"<b>{esc(p.node)}</b> "
            + _("primary · up · PostgreSQL {version} · timeline {timeline} · LSN {lsn}").format(
                version=esc(p.server_version or "?"),
                timeline=esc(p.timeline if p.timeline is not None else "–"),
                lsn=code(p.lsn or "–"),
            )
            + role_note
        )
    for replica in cluster.replicas:
        lines.extend(_replica_lines(replica))
    for backup in cluster.backups:
        lines.append(
            "⏳ "
            + _("base backup running: pid {pid} from {client} ({state}, sent {lsn})").format(
                pid=esc(backup.pid),
                client=esc(backup.client_addr or "local"),
                state=esc(backup.state or "?"),
                lsn=code(backup.sent_lsn or "–"),
            )
        )
    for sender in cluster.unknown_senders:
        lines.append(
            f"{INFO} "
            + _("unconfigured standby {name} from {client}: {state}, slot {slot}").format(
                name=esc(sender.application_name or "?"),
                client=esc(sender.client_addr or "local"),
                state=esc(sender.state or "?"),
                slot=esc(sender.slot_name or "–"),
            )
        )
    return "\n".join(lines)


def _replica_lines(replica: ReplicaView) -> list[str]:
    icon = {"streaming": OK, "down": FAIL, "absent": FAIL, "running as a primary": FAIL}.get(
        replica.state, WARN
    )
    head = f"{icon} <b>{esc(replica.node)}</b> " + _("replica · {state}").format(
        state=esc(replica.state)
    )
    if replica.slot:
        head += " · " + _("slot {slot}").format(slot=esc(replica.slot))
    lines = [head]
    if replica.slotless is not None:
        lines.append(slotless_status_line(replica.slotless))
    if replica.state == "down":
        lines.append(
            "   "
            + _("reason: {reason}").format(
                reason=esc(reason_text(replica.down_reason) or _("unknown"))
            )
        )
        return lines
    sender = replica.sender
    if sender is not None:
        lines.append(
            "   "
            + _("sync {sync} · {lsns}").format(
                sync=esc(sender.sync_state or "–"), lsns=_lsns(sender)
            )
        )
        lines.append(
            "   "
            + _("lag {bytes} · replay lag {seconds}").format(
                bytes=esc(human_bytes(replica.lag_bytes)),
                seconds=esc(human_seconds(replica.lag_seconds)),
            )
        )
    snapshot = replica.receiver
    if snapshot is not None:
        if not snapshot.in_recovery:
            lines.append(f"   {WARN} " + _("not in recovery: this node is a primary now"))
        receiver = snapshot.receiver
        host = receiver.sender_host if receiver else None
        source = f"{host}:{receiver.sender_port}" if receiver and host else "–"
        lines.append(
            "   "
            + _(
                "receiver {status} from {source} · slot {slot} · flushed {lsn}"
                " · replay delay {delay}"
            ).format(
                status=esc((receiver.status if receiver else None) or _("not running")),
                source=esc(source),
                slot=esc((receiver.slot_name if receiver else None) or "–"),
                lsn=code((receiver.flushed_lsn if receiver else None) or "–"),
                delay=esc(human_seconds(snapshot.replay_delay_s)),
            )
        )
    return lines


def _lsns(sender: WalSender) -> str:
    parts = (sender.sent_lsn, sender.write_lsn, sender.flush_lsn, sender.replay_lsn)
    return "sent/write/flush/replay " + " / ".join(code(p or "–") for p in parts)
