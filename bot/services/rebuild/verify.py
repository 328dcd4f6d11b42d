"""Does a rebuilt replica stream, seen from both sides? A pure decision, tested without servers.

The rebuild's verify step, its rollback and ``--cleanup`` probe both nodes once and ask
:func:`judge_streaming` with what they read: the replica's snapshot, the primary's slot and
walsenders, and what the plan expects (application_name, and the sync_state of a
synchronous standby). The answer says yes or no and describes what was seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.models import NodeSnapshot, SlotInfo, WalSender

#: A replica that was one of these before a rebuild must be it again afterwards.
SYNCHRONOUS_STATES = frozenset({"sync", "quorum", "potential"})


@dataclass(frozen=True)
class StreamVerdict:
    """The outcome of one look at both sides: ``ok`` and what was seen."""

    ok: bool
    seen: str


def judge_streaming(
    replica: NodeSnapshot | None,
    slot: SlotInfo | None,
    walsenders: Sequence[WalSender],
    expected_name: str,
    expected_sync_state: str = "",
) -> StreamVerdict:
    """True when the replica streams and the primary sees it as the plan expects.

    Replica side: in recovery, ``pg_stat_wal_receiver.status = 'streaming'``. Primary side:
    the slot is active and the walsender whose pid is the slot's ``active_pid`` is in state
    ``streaming`` under ``expected_name``; if ``expected_sync_state`` is a synchronous state,
    that walsender's ``sync_state`` equals it. An empty ``expected_name`` accepts any name
    (the old replica after a rollback). ``replica`` None: the replica did not answer.
    """
    problems: list[str] = []
    if replica is None:
        seen = ["replica does not answer"]
        problems.append("replica")
    else:
        status = replica.receiver.status if replica.receiver is not None else None
        seen = [f"receiver {status or 'not running'}"]
        if not replica.in_recovery:
            seen[0] += " (NOT in recovery)"
            problems.append("recovery")
        if status != "streaming":
            problems.append("receiver")
    if slot is None:
        seen.append("slot missing")
        problems.append("slot")
    elif not slot.active or slot.active_pid is None:
        seen.append(f"slot {slot.name} inactive")
        problems.append("slot")
    else:
        seen.append(f"slot {slot.name} active (PID {slot.active_pid})")
        sender = next((s for s in walsenders if s.pid == slot.active_pid), None)
        if sender is None:
            seen.append("its walsender not in pg_stat_replication")
            problems.append("walsender")
        else:
            seen.append(
                f"walsender {sender.state or 'unknown'} as {sender.application_name or '?'}"
                f", sync_state {sender.sync_state or '–'}"
            )
            wrong_name = bool(expected_name) and sender.application_name != expected_name
            if sender.state != "streaming" or wrong_name:
                problems.append("walsender")
            if (
                expected_sync_state in SYNCHRONOUS_STATES
                and sender.sync_state != expected_sync_state
            ):
                problems.append("sync_state")
    return StreamVerdict(not problems, ", ".join(seen))


def verify_text(slot: str, application_name: str, sync_state: str = "") -> str:
    """What the verify step checks, as the plan prints it."""
    text = (
        "replica: in recovery, pg_stat_wal_receiver.status = 'streaming'; "
        f"primary: slot {slot} active, its walsender streaming as "
        f"application_name {application_name}"
    )
    if sync_state in SYNCHRONOUS_STATES:
        text += f", sync_state {sync_state}"
    return text
