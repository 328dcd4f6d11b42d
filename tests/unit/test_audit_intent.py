"""Intent rows: a state-changing command or confirmed action is audited before it runs.

The outcome row is written after the action; if the process dies (or the task is cancelled)
in between, the intent row is what tells the audit log that the action was started.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.models import Outcome, Role
from handlers import registry
from handlers.base import Reply
from tests.unit.fakes import ADMIN_ID, OPERATOR_ID, VIEWER_ID, make_bot


def data_of(reply: Reply, label_prefix: str) -> str:
    return next(b.data for b in reply.buttons if b.label.startswith(label_prefix))


async def test_createslot_leaves_an_intent_row_before_its_outcome_row() -> None:
    bot = make_bot()

    await bot.command("/createslot newslot main", user_id=OPERATOR_ID)

    assert [(r.command, r.outcome, r.args) for r in bot.audit.records] == [
        ("createslot", Outcome.INTENT, "newslot main"),
        ("createslot", Outcome.OK, "newslot main"),
    ]


async def test_a_read_only_command_and_a_refused_role_write_no_intent_row() -> None:
    bot = make_bot()

    await bot.command("/status main", user_id=VIEWER_ID)
    await bot.command("/createslot newslot main", user_id=VIEWER_ID)  # refused before it runs
    await bot.command("/rebuild pg2", user_id=OPERATOR_ID)  # refused: a run needs an admin

    assert Outcome.INTENT not in [r.outcome for r in bot.audit.records]


async def test_a_confirmed_drop_leaves_an_intent_row_before_its_outcome_row() -> None:
    bot = make_bot()
    question = (await bot.command("/dropslot old_slot main", user_id=ADMIN_ID)).sent[0]

    await bot.press(data_of(question, "Drop"), user_id=ADMIN_ID)

    assert [(r.command, r.outcome) for r in bot.audit.records] == [
        ("dropslot", Outcome.OK),  # the question: nothing dropped yet
        ("dropslot.confirm", Outcome.INTENT),
        ("dropslot.confirm", Outcome.OK),
    ]
    assert bot.audit.records[1].args == "cluster=main slot=old_slot"


async def test_a_handler_that_crashes_mid_way_still_left_its_intent_row() -> None:
    bot = make_bot()
    bot.pg.fail("create_physical_slot", "pg1", RuntimeError("connection reset mid-statement"))

    await bot.command("/createslot newslot main", user_id=OPERATOR_ID)

    assert [(r.command, r.outcome) for r in bot.audit.records] == [
        ("createslot", Outcome.INTENT),
        ("createslot", Outcome.FAILED),
    ]


async def test_a_process_dying_mid_action_leaves_the_intent_row_without_an_outcome() -> None:
    """Cancellation (shutdown, a killed task) is not an Exception: no outcome row follows,
    and the intent row is all the audit log has, which is what it is for."""
    bot = make_bot()
    bot.pg.fail("create_physical_slot", "pg1", asyncio.CancelledError())

    with pytest.raises(asyncio.CancelledError):
        await bot.command("/createslot newslot main", user_id=OPERATOR_ID)

    assert [(r.command, r.outcome) for r in bot.audit.records] == [("createslot", Outcome.INTENT)]


async def test_a_mute_leaves_an_intent_row_before_its_outcome() -> None:
    bot = make_bot()  # (no alert service on these fakes: the mute itself is refused)

    await bot.command("/mute main 1h", user_id=OPERATOR_ID)

    assert [(r.command, r.outcome) for r in bot.audit.records] == [
        ("mute", Outcome.INTENT),
        ("mute", Outcome.REFUSED),
    ]


def test_the_state_changing_commands_and_actions_are_flagged_where_declared() -> None:
    flagged = {name for name, spec in registry.COMMANDS.items() if spec.changes_state_with([])}
    assert flagged == {"createslot", "mute", "unmute"}
    rebuild = registry.COMMANDS["rebuild"]
    assert [
        rebuild.changes_state_with(args.split())
        for args in ("pg2", "pg2 --dry-run", "pg2 --cleanup", "pg2 --cancel", "pg2 --rollback")
    ] == [False, False, False, True, False]
    assert not rebuild.changes_state_with(["pg2", "--abandon"])  # both ask to confirm first
    assert {name for name, spec in registry.ACTIONS.items() if spec.changes_state} == {
        "attachslot",
        "detachslot",
        "dropslot",
        "rebuild",
        "rebuild_abandon",
        "rebuild_cleanup",
        "rebuild_rollback",
        "repair",
    }


async def test_an_operator_cancel_is_refused_before_any_intent_row() -> None:
    """/rebuild --cancel needs an admin: the role the arguments need is checked first."""
    bot = make_bot()

    await bot.command("/rebuild pg2 --cancel", user_id=OPERATOR_ID)

    assert [(r.command, r.outcome) for r in bot.audit.records] == [("rebuild", Outcome.REFUSED)]


async def test_an_admin_cancel_leaves_an_intent_row_then_its_outcome() -> None:
    bot = make_bot()

    await bot.command("/rebuild pg2 --cancel", user_id=ADMIN_ID)

    assert bot.audit.records[0].outcome is Outcome.INTENT
    assert len(bot.audit.records) == 2
    assert bot.audit.records[1].outcome is not Outcome.INTENT


def test_the_rebuild_role_depends_on_its_mode() -> None:
    rebuild = registry.COMMANDS["rebuild"]
    assert [
        rebuild.min_role_for(args.split())
        for args in ("pg2", "pg2 --dry-run", "pg2 --cancel", "pg2 --bogus", "")
    ] == [
        (Role.ADMIN, "/rebuild"),
        (Role.OPERATOR, "/rebuild"),
        (Role.ADMIN, "/rebuild --cancel"),
        (Role.OPERATOR, "/rebuild"),
        (Role.OPERATOR, "/rebuild"),
    ]
