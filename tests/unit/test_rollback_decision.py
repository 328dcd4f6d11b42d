"""The rollback decision: a pure function of the host state and what the job recorded."""

from __future__ import annotations

import pytest

from bot.services.rebuild.rollback import HostState, RollbackAction, decide_rollback

A = RollbackAction
MOVED = "8:100"  # the data directory's identity, recorded before move_aside
NEW = "8:200"  # what pg_basebackup created
FOREIGN = "8:999"  # a directory with the job's names that the job did not create


def state(
    data: str | None, old: str | None, failed: str | None = None, running: bool = False
) -> HostState:
    return HostState(data_id=data, old_id=old, failed_id=failed, running=running, slot_copy=True)


@pytest.mark.parametrize(
    ("host", "moved", "actions"),
    [
        pytest.param(state(MOVED, None, running=True), "", (A.RESTORE_SLOT,), id="before-stop"),
        pytest.param(state(MOVED, None), "", (A.RESTORE_SLOT, A.START_OLD), id="stopped-only"),
        pytest.param(state(MOVED, None), MOVED, (A.RESTORE_SLOT, A.START_OLD), id="crash-pre-mv"),
        pytest.param(
            state(None, MOVED), MOVED, (A.PUT_BACK_OLD, A.RESTORE_SLOT, A.START_OLD), id="moved"
        ),
        pytest.param(
            state(NEW, MOVED),
            MOVED,
            (A.SET_ASIDE_NEW, A.PUT_BACK_OLD, A.RESTORE_SLOT, A.START_OLD),
            id="partial-copy",
        ),
        pytest.param(
            state(NEW, MOVED, running=True),
            MOVED,
            (A.STOP_NEW, A.SET_ASIDE_NEW, A.PUT_BACK_OLD, A.RESTORE_SLOT, A.START_OLD),
            id="new-server-runs",
        ),
        pytest.param(
            state(None, MOVED, failed=NEW),
            MOVED,
            (A.PUT_BACK_OLD, A.RESTORE_SLOT, A.START_OLD),
            id="crash-between-the-two-moves",
        ),
        pytest.param(
            state(MOVED, None, failed=NEW, running=True),
            MOVED,
            (A.RESTORE_SLOT,),
            id="already-rolled-back",
        ),
        # The collision of finding 3: the old name holds another job's directory.
        pytest.param(
            state(MOVED, FOREIGN, running=True), MOVED, (A.RESTORE_SLOT,), id="foreign-old-kept"
        ),
    ],
)
def test_actions(host: HostState, moved: str, actions: tuple[RollbackAction, ...]) -> None:
    decision = decide_rollback(host, moved)
    assert decision.refusal is None
    assert decision.actions == actions


def test_no_slot_copy_means_no_slot_restore() -> None:
    host = HostState(data_id=None, old_id=MOVED, failed_id=None, running=False, slot_copy=False)
    assert decide_rollback(host, MOVED).actions == (A.PUT_BACK_OLD, A.START_OLD)


@pytest.mark.parametrize(
    ("host", "moved", "why"),
    [
        pytest.param(state(NEW, FOREIGN, running=True), MOVED, "old_gone", id="foreign-old"),
        pytest.param(state(NEW, FOREIGN, running=True), "", "unrecorded_old", id="unrecorded"),
        pytest.param(state(None, FOREIGN), MOVED, "none_exist", id="only-foreign-old"),
        pytest.param(state(None, None), MOVED, "none_exist", id="nothing"),
        pytest.param(state(NEW, MOVED, failed=FOREIGN), MOVED, "all_exist", id="three-dirs"),
    ],
)
def test_refusals_move_nothing(host: HostState, moved: str, why: str) -> None:
    decision = decide_rollback(host, moved)
    assert decision.refusal is not None
    assert decision.refusal.key == f"progress.rollback.{why}"
    assert decision.actions == ()
    assert not decision.moves
