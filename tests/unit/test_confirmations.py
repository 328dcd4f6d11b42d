"""Confirmation buttons are bound to one user, expire, and work exactly once."""

from __future__ import annotations

import pytest

from bot.errors import ConfirmationError
from bot.services.confirmations import ConfirmationService
from tests.unit.fakes import FakeClock
from tests.unit.worded import english, raises_worded

OWNER, OTHER = 1001, 1004
TTL = 30.0


def service() -> tuple[ConfirmationService, FakeClock]:
    clock = FakeClock()
    return ConfirmationService(clock, ttl_s=TTL), clock


def refusal(confirmations: ConfirmationService, nonce: str, user_id: int) -> str:
    with pytest.raises(ConfirmationError) as caught:
        confirmations.take(nonce, user_id)
    return english(caught.value)


def test_owner_press_within_ttl_returns_the_pending_action() -> None:
    confirmations, clock = service()
    pending = confirmations.issue(OWNER, "dropslot", {"slot": "old", "cluster": "main"})
    clock.advance(TTL - 1)

    taken = confirmations.take(pending.nonce, OWNER)

    assert (taken.action, taken.params) == ("dropslot", {"slot": "old", "cluster": "main"})


def test_nonces_are_unique_and_fit_in_callback_data() -> None:
    confirmations, _ = service()

    nonces = {confirmations.issue(OWNER, "dropslot", {}).nonce for _ in range(200)}

    assert len(nonces) == 200
    assert all(len(f"cf:{n}".encode()) <= 64 for n in nonces)


def test_foreign_press_is_refused_and_leaves_the_button_to_its_owner() -> None:
    confirmations, _ = service()
    pending = confirmations.issue(OWNER, "dropslot", {})

    message = refusal(confirmations, pending.nonce, OTHER)

    assert message == "only the user who asked may press this button"
    assert confirmations.take(pending.nonce, OWNER).action == "dropslot"


def test_expired_press_is_refused() -> None:
    confirmations, clock = service()
    pending = confirmations.issue(OWNER, "dropslot", {})
    clock.advance(TTL + 0.1)

    message = refusal(confirmations, pending.nonce, OWNER)

    assert message == "this confirmation expired; run the command again"


def test_replayed_press_is_refused() -> None:
    confirmations, _ = service()
    pending = confirmations.issue(OWNER, "dropslot", {})
    confirmations.take(pending.nonce, OWNER)

    message = refusal(confirmations, pending.nonce, OWNER)

    assert message == "this button was already used (confirmed)"


def test_unknown_nonce_is_refused() -> None:
    confirmations, _ = service()

    message = refusal(confirmations, "never-issued", OWNER)

    assert message == "this button is no longer valid; run the command again"


def test_the_four_refusals_are_distinct() -> None:
    confirmations, clock = service()
    foreign = confirmations.issue(OWNER, "a", {})
    replayed = confirmations.issue(OWNER, "b", {})
    confirmations.take(replayed.nonce, OWNER)
    expired = confirmations.issue(OWNER, "c", {})
    messages = {
        refusal(confirmations, foreign.nonce, OTHER),
        refusal(confirmations, replayed.nonce, OWNER),
        refusal(confirmations, "unknown", OWNER),
    }
    clock.advance(TTL + 1)
    messages.add(refusal(confirmations, expired.nonce, OWNER))

    assert len(messages) == 4


def test_cancelled_button_cannot_be_confirmed_afterwards() -> None:
    confirmations, _ = service()
    pending = confirmations.issue(OWNER, "dropslot", {})

    confirmations.cancel(pending.nonce, OWNER)

    assert (
        refusal(confirmations, pending.nonce, OWNER) == "this button was already used (cancelled)"
    )


def test_cancel_by_another_user_is_refused() -> None:
    confirmations, _ = service()
    pending = confirmations.issue(OWNER, "dropslot", {})

    with raises_worded(ConfirmationError, "only the user who asked"):
        confirmations.cancel(pending.nonce, OTHER)


def test_expired_button_is_still_refused_as_expired_after_the_cleanup_on_issue() -> None:
    confirmations, clock = service()
    old = confirmations.issue(OWNER, "dropslot", {})
    clock.advance(TTL + 1)
    confirmations.issue(OWNER, "dropslot", {})  # drops expired pending entries

    assert "expired" in refusal(confirmations, old.nonce, OWNER)


def test_second_approver_button_refuses_the_requester() -> None:
    confirmations, _ = service()
    pending = confirmations.issue(OWNER, "rebuild", {}, other_user=True)

    assert refusal(confirmations, pending.nonce, OWNER) == (
        "a second admin must approve this; you asked for it"
    )
    assert confirmations.take(pending.nonce, OTHER).action == "rebuild"


def test_second_approver_button_may_be_cancelled_by_the_requester() -> None:
    confirmations, _ = service()
    pending = confirmations.issue(OWNER, "rebuild", {}, other_user=True)

    confirmations.cancel(pending.nonce, OWNER)

    assert (
        refusal(confirmations, pending.nonce, OTHER) == "this button was already used (cancelled)"
    )
