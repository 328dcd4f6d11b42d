"""Confirmation buttons: bound to one user, single-use, expiring."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable

from bot.errors import ConfirmationError
from bot.models import PendingConfirmation
from bot.phrases import Phrase
from bot.ports import Clock

_USED_MEMORY = 1024

Authorize = Callable[[PendingConfirmation], None]
"""Raises (e.g. PermissionDenied) when the presser may not act on this confirmation."""


def _anyone(pending: PendingConfirmation) -> None:
    """The default: identity checks only."""


class ConfirmationService:
    """Issues nonces for risky actions and checks them when a button is pressed.

    A press is refused when the nonce is unknown (e.g. issued before a restart), expired,
    pressed by someone other than the requester, or already used (replayed).
    """

    def __init__(self, clock: Clock, ttl_s: float = 60.0) -> None:
        self._clock = clock
        self._ttl = ttl_s
        self._pending: dict[str, PendingConfirmation] = {}
        self._used: OrderedDict[str, str] = OrderedDict()

    def issue(
        self, user_id: int, action: str, params: dict[str, str], other_user: bool = False
    ) -> PendingConfirmation:
        """Create a pending confirmation for ``action`` that only ``user_id`` may press.

        With ``other_user`` the roles swap: anyone *but* the requester must press it (a second
        approver; the dispatcher still checks the action's minimum role).
        """
        self._forget_expired()
        nonce = secrets.token_urlsafe(12)
        pending = PendingConfirmation(
            nonce=nonce,
            user_id=user_id,
            action=action,
            params=dict(params),
            expires_at=self._clock.monotonic() + self._ttl,
            other_user=other_user,
        )
        self._pending[nonce] = pending
        return pending

    def take(self, nonce: str, user_id: int, authorize: Authorize = _anyone) -> PendingConfirmation:
        """Consume the confirmation ``nonce`` pressed by ``user_id``, or raise ConfirmationError.

        ``authorize`` runs after the identity checks and before the nonce is consumed: a press by
        someone who may not act (wrong user, too low a role) leaves the confirmation pending.
        """
        pending = self._pressable(nonce, user_id)
        authorize(pending)
        del self._pending[nonce]
        self._remember_used(nonce, "confirmed")
        return pending

    def _pressable(self, nonce: str, user_id: int) -> PendingConfirmation:
        """The pending confirmation ``user_id`` may press, without consuming it."""
        if nonce in self._used:
            how = self._used[nonce]
            if how == "expired":
                raise ConfirmationError(Phrase.of("error.confirm.used_expired"))
            if how == "cancelled":
                raise ConfirmationError(Phrase.of("error.confirm.used_cancelled"))
            raise ConfirmationError(Phrase.of("error.confirm.used_confirmed"))
        pending = self._pending.get(nonce)
        if pending is None:
            raise ConfirmationError(Phrase.of("error.confirm.unknown"))
        if pending.other_user and pending.user_id == user_id:
            raise ConfirmationError(Phrase.of("error.confirm.second_admin"))
        if not pending.other_user and pending.user_id != user_id:
            raise ConfirmationError(Phrase.of("error.confirm.foreign"))
        if self._clock.monotonic() > pending.expires_at:
            del self._pending[nonce]
            self._remember_used(nonce, "expired")
            raise ConfirmationError(Phrase.of("error.confirm.expired"))
        return pending

    def cancel(
        self, nonce: str, user_id: int, authorize: Authorize = _anyone
    ) -> PendingConfirmation:
        """Withdraw a pending confirmation: the requester (or, for approvals, another approver).

        As for :meth:`take`, a refused cancel (``authorize`` raising) changes nothing.
        """
        pending = self._pending.get(nonce)
        if pending is None or not (pending.other_user and pending.user_id == user_id):
            pending = self._pressable(nonce, user_id)
        authorize(pending)
        del self._pending[nonce]
        self._remember_used(nonce, "cancelled")
        return pending

    def _remember_used(self, nonce: str, how: str) -> None:
        self._used[nonce] = how
        while len(self._used) > _USED_MEMORY:
            self._used.popitem(last=False)

    def _forget_expired(self) -> None:
        now = self._clock.monotonic()
        for nonce in [n for n, p in self._pending.items() if now > p.expires_at]:
            del self._pending[nonce]
            self._remember_used(nonce, "expired")
