"""/slots, /createslot and /dropslot wording."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import (
    ClusterSlots,
    SlotInfo,
)
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


def slots(clusters: Sequence[ClusterSlots]) -> str:
    """The /slots reply for the selected clusters."""
    return "\n\n".join(_cluster_slots(c) for c in clusters)


def _cluster_slots(cluster: ClusterSlots) -> str:
    title = f"<b>{esc(cluster.cluster)}</b> slots on {esc(cluster.primary_node)}"
    if cluster.error is not None:
        return f"{FAIL} {title}: {esc(cluster.error)}"
    if not cluster.slots:
        return f"{INFO} {title}: none"
    risky = sum(1 for s in cluster.slots if s.at_risk or not s.active)
    icon = OK if risky == 0 else WARN
    lines = [f"{icon} {title}: {len(cluster.slots)} slot(s), {risky} need attention"]
    lines.extend(_slot_line(s) for s in cluster.slots[:MAX_SLOT_LINES])
    if len(cluster.slots) > MAX_SLOT_LINES:
        lines.append(f"… and {len(cluster.slots) - MAX_SLOT_LINES} more slots")
    return "\n".join(lines)


def _slot_line(slot: SlotInfo) -> str:
    icon = FAIL if slot.at_risk else (OK if slot.active else WARN)
    state = "active" if slot.active else "INACTIVE"
    line = (
        f"{icon} <b>{esc(slot.name)}</b> {esc(slot.slot_type)} · {state}"
        f" · restart {code(slot.restart_lsn or '–')}"
        f" · retains {esc(human_bytes(slot.retained_bytes))}"
        f" · wal_status {esc(slot.wal_status or '–')}"
    )
    if slot.safe_wal_size is not None:
        line += f" · safe {esc(human_bytes(slot.safe_wal_size))}"
    if slot.used_by:
        line += f" · for {esc(slot.used_by)}"
    if slot.inactive_since is not None:
        line += f" · inactive since {esc(slot.inactive_since.strftime('%Y-%m-%d %H:%M:%S'))}"
    if slot.invalidation_reason:
        line += f" · invalidated: {esc(slot.invalidation_reason)}"
    if slot.wal_status == "lost":
        line += " · WAL lost: the replica must be rebuilt"
    return line


def slot_created(slot: str, cluster: str, node: str) -> str:
    """Confirmation that a slot was created."""
    return f"{OK} slot {code(slot)} created on {esc(cluster)}/{esc(node)}"


def confirm_drop_slot(
    slot: SlotInfo, cluster: str, node: str, ttl_s: float, second_approver: bool = False
) -> str:
    """The question shown with the drop confirmation buttons."""
    return (
        f"{WARN} Drop slot {code(slot.name)} on {esc(cluster)}/{esc(node)}?\n"
        + (
            f"It is inactive and retains {esc(human_bytes(slot.retained_bytes))} of WAL."
            if slot.retained_bytes is not None
            else "It is inactive and reserves no WAL yet."
        )
        + " A replica using it will need a rebuild.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def slot_dropped(slot: str, cluster: str, node: str) -> str:
    """Confirmation that a slot was dropped."""
    return f"{OK} slot {code(slot)} dropped on {esc(cluster)}/{esc(node)}"


def button_drop_slot(slot: str) -> str:
    """Label of the button confirming a slot drop."""
    return f"Drop {slot}"
