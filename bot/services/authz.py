"""Who may do what: deny by default, roles viewer < operator < admin, optional chat list."""

from __future__ import annotations

from collections.abc import Iterable

from bot.config import UserConfig
from bot.errors import PermissionDenied
from bot.models import Role, User
from bot.phrases import Phrase


class Authorizer:
    """Resolves Telegram user ids to roles and enforces minimum roles and allowed chats."""

    def __init__(self, users: Iterable[UserConfig], allowed_chat_ids: Iterable[int] = ()) -> None:
        self._users = {u.id: u for u in users}
        self._allowed_chats = frozenset(allowed_chat_ids)

    def user(self, user_id: int, fallback_name: str) -> User:
        """The configured user (name and role from config), or an unknown user with no role."""
        known = self._users.get(user_id)
        if known is None:
            return User(id=user_id, name=fallback_name, role=None)
        return User(id=user_id, name=known.name, role=known.role)

    def chat_allowed(self, chat_id: int) -> bool:
        """True when no chat list is configured or the chat is on it."""
        return not self._allowed_chats or chat_id in self._allowed_chats

    def require(self, user: User, minimum: Role, what: str) -> None:
        """Raise PermissionDenied unless ``user`` has at least ``minimum``."""
        if user.role is None:
            raise PermissionDenied(Phrase.of("error.auth.not_allowed"))
        if user.role < minimum:
            raise PermissionDenied(
                Phrase.of("error.auth.role", what=what, needed=minimum.label, role=user.role.label)
            )
