"""What a rollback does, decided from what is observed on the host and what the job recorded.

A pure function, so every combination is unit-tested without servers. The one rule that keeps
a rollback from ever putting a foreign directory back: the old directory is moved only when
its identity ("device:inode", kept by a rename) is the one the job recorded for the data
directory *before* it moved it aside. A crash between that record and the rename leaves either
the data directory in place (nothing to move) or the old directory with the recorded identity
(it is ours); a directory that merely has the expected name is never enough.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.phrases import Phrase


class RollbackAction(enum.StrEnum):
    """One step of a rollback, in the order they run."""

    STOP_NEW = "stop_new"  # the server running on the new copy
    SET_ASIDE_NEW = "set_aside_new"  # data -> failed (the new or partial copy is kept)
    PUT_BACK_OLD = "put_back_old"  # old -> data
    RESTORE_SLOT = "restore_slot"  # slot <- its rollback copy, so the old replica finds its WAL
    START_OLD = "start_old"


@dataclass(frozen=True)
class HostState:
    """What the rollback observed: directory identities (None: absent), server, slot copy."""

    data_id: str | None
    old_id: str | None
    failed_id: str | None
    running: bool
    slot_copy: bool


@dataclass(frozen=True)
class RollbackDecision:
    """The actions to run, or why a human must look (then nothing is touched; the phrase's
    words are in handlers/render/rebuild.py)."""

    actions: tuple[RollbackAction, ...] = ()
    refusal: Phrase | None = None

    @property
    def moves(self) -> bool:
        """True if a directory is renamed."""
        return RollbackAction.PUT_BACK_OLD in self.actions


def decide_rollback(state: HostState, moved_id: str) -> RollbackDecision:
    """The rollback for ``state``; ``moved_id`` is what the job recorded ("" if it never got
    as far as moving the data directory aside)."""
    slot = (RollbackAction.RESTORE_SLOT,) if state.slot_copy else ()
    ours = bool(moved_id) and state.old_id == moved_id
    if ours:
        if state.data_id is None:
            return RollbackDecision((RollbackAction.PUT_BACK_OLD, *slot, RollbackAction.START_OLD))
        if state.failed_id is not None:
            return RollbackDecision(refusal=Phrase.of("progress.rollback.all_exist"))
        stop = (RollbackAction.STOP_NEW,) if state.running else ()
        return RollbackDecision(
            (
                *stop,
                RollbackAction.SET_ASIDE_NEW,
                RollbackAction.PUT_BACK_OLD,
                *slot,
                RollbackAction.START_OLD,
            )
        )
    if not moved_id and state.old_id is not None:
        return RollbackDecision(refusal=Phrase.of("progress.rollback.unrecorded_old"))
    if state.data_id is not None and (not moved_id or state.data_id == moved_id):
        # The data directory is the old replica's: never moved, or already put back.
        start = () if state.running else (RollbackAction.START_OLD,)
        return RollbackDecision((*slot, *start))
    if state.data_id is not None:
        return RollbackDecision(refusal=Phrase.of("progress.rollback.old_gone"))
    return RollbackDecision(refusal=Phrase.of("progress.rollback.none_exist"))
