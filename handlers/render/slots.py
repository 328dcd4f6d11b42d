"""/slots, /createslot and /dropslot wording."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import (
    ClusterSlots,
    SlotInfo,
)
from handlers.i18n import _, ngettext
from handlers.render.common import (
    FAIL,
    INFO,
    MAX_SLOT_LINES,
    OK,
    WARN,
    _approver,
    _expiry,
    code,
    esc,
    human_bytes,
)
from handlers.render.phrases import reason_text


def slots(clusters: Sequence[ClusterSlots]) -> str:
    """The /slots reply for the selected clusters."""
    return "\n\n".join(_cluster_slots(c) for c in clusters)


def _cluster_slots(cluster: ClusterSlots) -> str:
    title = _("{cluster} slots on {node}").format(
        cluster=f"<b>{esc(cluster.cluster)}</b>", node=esc(cluster.primary_node)
    )
    if cluster.error is not None:
        return f"{FAIL} {title}: {esc(reason_text(cluster.error))}"
    if not cluster.slots:
        return f"{INFO} {title}: " + _("none")
    risky = sum(1 for s in cluster.slots if s.at_risk or not s.active)
    icon = OK if risky == 0 else WARN
    count = len(cluster.slots)
    lines = [
        f"{icon} {title}: "
        + ngettext("{count} slot", "{count} slots", count).format(count=count)
        + ", "
        + ngettext("{risky} needs attention", "{risky} need attention", risky).format(risky=risky)
    ]
    lines.extend(_slot_line(s) for s in cluster.slots[:MAX_SLOT_LINES])
    if len(cluster.slots) > MAX_SLOT_LINES:
        more = len(cluster.slots) - MAX_SLOT_LINES
        lines.append(
            "… " + ngettext("and {n} more slot", "and {n} more slots", more).format(n=more)
        )
    return "\n".join(lines)


def _slot_line(slot: SlotInfo) -> str:
    icon = FAIL if slot.at_risk else (OK if slot.active else WARN)
    state = _("active") if slot.active else _("INACTIVE")
    line = f"{icon} <b>{esc(slot.name)}</b> {esc(slot.slot_type)} · {state} · " + _(
        "restart {lsn} · retains {bytes} · wal_status {wal_status}"
    ).format(
        lsn=code(slot.restart_lsn or "–"),
        bytes=esc(human_bytes(slot.retained_bytes)),
        wal_status=esc(slot.wal_status or "–"),
    )
    if slot.safe_wal_size is not None:
        line += " · " + _("safe {bytes}").format(bytes=esc(human_bytes(slot.safe_wal_size)))
    if slot.used_by:
        line += " · " + _("for {replica}").format(replica=esc(slot.used_by))
    if slot.inactive_since is not None:
        since = esc(slot.inactive_since.strftime("%Y-%m-%d %H:%M:%S"))
        line += " · " + _("inactive since {since}").format(since=since)
    if slot.invalidation_reason:
        line += " · " + _("invalidated: {reason}").format(reason=esc(slot.invalidation_reason))
    if slot.wal_status == "lost":
        line += " · " + _("WAL lost: the replica must be rebuilt")
    return line


def slot_created(slot: str, cluster: str, node: str) -> str:
    """Confirmation that a slot was created."""
    return f"{OK} " + _("slot {slot} created on {where}").format(
        slot=code(slot), where=f"{esc(cluster)}/{esc(node)}"
    )


def confirm_drop_slot(
    slot: SlotInfo, cluster: str, node: str, ttl_s: float, second_approver: bool = False
) -> str:
    """The question shown with the drop confirmation buttons."""
    return (
        f"{WARN} "
        + _("Drop slot {slot} on {where}?").format(
            slot=code(slot.name), where=f"{esc(cluster)}/{esc(node)}"
        )
        + "\n"
        + (
            _("It is inactive and retains {bytes} of WAL.").format(
                bytes=esc(human_bytes(slot.retained_bytes))
            )
            if slot.retained_bytes is not None
            else _("It is inactive and reserves no WAL yet.")
        )
        + " "
        + _("A replica using it will need a rebuild.")
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def slot_dropped(slot: str, cluster: str, node: str) -> str:
    """Confirmation that a slot was dropped."""
    return f"{OK} " + _("slot {slot} dropped on {where}").format(
        slot=code(slot), where=f"{esc(cluster)}/{esc(node)}"
    )


def button_drop_slot(slot: str) -> str:
    """Label of the button confirming a slot drop."""
    return _("Drop {slot}").format(slot=slot)
