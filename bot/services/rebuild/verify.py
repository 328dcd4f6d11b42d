"""Does a rebuilt replica stream, seen from both sides? A pure decision, tested without servers.

The rebuild's verify step, its rollback and ``--cleanup`` probe both nodes once and ask
:func:`judge_streaming` with what they read: the replica's snapshot, the primary's slot and
walsenders, and what the plan expects (application_name, and the sync_state of a
synchronous standby). The answer says yes or no and what was seen, as phrases (``verify.*``,
worded in handlers/render/plans.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.models import NodeSnapshot, SlotInfo, WalSender
from bot.phrases import Phrase

#: A replica that was one of these before a rebuild must be it again afterwards.
SYNCHRONOUS_STATES = frozenset({"sync", "quorum", "potential"})


@dataclass(frozen=True)
class StreamVerdict:
    """The outcome of one look at both sides: ``ok`` and what was seen."""

    ok: bool
    seen: tuple[Phrase, ...]

    @property
    def seen_text(self) -> str:
        """What was seen, language-neutral (logs, audit rows)."""
        return "; ".join(str(part) for part in self.seen)


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
    seen: list[Phrase] = []
    if replica is None:
        seen.append(Phrase.of("verify.replica_silent"))
        problems.append("replica")
    else:
        status = replica.receiver.status if replica.receiver is not None else None
        seen.append(
            Phrase.of("verify.receiver", status=status)
            if status
            else Phrase.of("verify.receiver_off")
        )
        if not replica.in_recovery:
            seen.append(Phrase.of("verify.not_in_recovery"))
            problems.append("recovery")
        if status != "streaming":
            problems.append("receiver")
    if slot is None:
        seen.append(Phrase.of("verify.slot_missing"))
        problems.append("slot")
    elif not slot.active or slot.active_pid is None:
        seen.append(Phrase.of("verify.slot_inactive", slot=slot.name))
        problems.append("slot")
    else:
        seen.append(Phrase.of("verify.slot_active", slot=slot.name, pid=slot.active_pid))
        sender = next((s for s in walsenders if s.pid == slot.active_pid), None)
        if sender is None:
            seen.append(Phrase.of("verify.walsender_gone"))
            problems.append("walsender")
        else:
            seen.append(
                Phrase.of(
                    "verify.walsender",
                    state=sender.state or "?",
                    name=sender.application_name or "?",
                    sync_state=sender.sync_state or "–",
                )
            )
            wrong_name = bool(expected_name) and sender.application_name != expected_name
            if sender.state != "streaming" or wrong_name:
                problems.append("walsender")
            if (
                expected_sync_state in SYNCHRONOUS_STATES
                and sender.sync_state != expected_sync_state
            ):
                problems.append("sync_state")
    return StreamVerdict(not problems, tuple(seen))


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
