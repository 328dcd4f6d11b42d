"""Transport-neutral vocabulary of the handlers: requests, replies, chats, command specs.

The Telegram and console transports translate their own updates into :class:`Request` and
implement :class:`Chat`; the handlers never see a Telegram type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from bot.models import Role, User
from bot.services.registry import Services


@dataclass(frozen=True)
class Button:
    """An inline button: its label and the callback data it sends back (≤ 64 bytes)."""

    label: str
    data: str


@dataclass(frozen=True)
class Reply:
    """A message to show: Telegram-HTML text (every dynamic value escaped) and buttons."""

    html: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class Request:
    """One incoming command or button press, as the transport saw it."""

    user_id: int
    user_name: str
    chat_id: int
    chat_type: str  # "private", "group", "supergroup", "channel", "console"
    text: str = ""
    button_data: str | None = None
    message_id: int | None = None  # the message a pressed button belongs to
    # Filled by the Telegram transport only (the console leaves the defaults):
    sent_at: float | None = None  # when the message was sent (epoch seconds)
    forwarded: bool = False  # the message was forwarded from someone else
    bot_username: str | None = None  # this bot's own username (from getMe)
    language_code: str | None = None  # the Telegram client's language (IETF tag), if it says

    @property
    def is_private(self) -> bool:
        """True for one-to-one chats (and the console)."""
        return self.chat_type in {"private", "console"}


class Chat(Protocol):
    """Where replies go; implemented by each transport."""

    async def send(self, reply: Reply) -> int:
        """Send a message; return its id (long text is split by the transport)."""
        ...

    async def edit(self, message_id: int, reply: Reply) -> None:
        """Replace the text and buttons of a message sent earlier."""
        ...

    async def notify(self, text: str) -> None:
        """A short toast answering a button press (plain text)."""
        ...

    async def send_photo(self, png: bytes, caption_html: str) -> int:
        """Send a picture with a one-line caption (≤ 1024 characters); return its id."""
        ...

    async def set_user_menu(self, user_id: int, commands: Mapping[str, str]) -> None:
        """Replace the command menu of ``user_id``'s private chat with the bot (command name ->
        description); a transport without menus does nothing."""
        ...


@dataclass
class CommandContext:
    """What a command handler gets: the caller, its chat, the services, the arguments."""

    services: Services
    user: User
    request: Request
    chat: Chat
    args: list[str]
    audit_note: str = ""
    audit_args: str | None = None
    commands: tuple[CommandSpec, ...] = ()


Handler = Callable[[CommandContext], Awaitable[None]]
ActionHandler = Callable[[CommandContext, dict[str, str]], Awaitable[None]]
# True, False, or a test of the arguments (``/rebuild pg2 --abandon`` changes state, a dry run
# does not): the dispatcher audits an "intent" row before such a command runs.
ChangesState = bool | Callable[[list[str]], bool]
# A test of the arguments naming the role they need and what for (``/rebuild pg2 --cancel`` ->
# admin, "/rebuild --cancel"); the dispatcher requires it before any intent row is written.
RoleWith = Callable[[list[str]], tuple[Role, str]]


class Purpose(StrEnum):
    """What a command is for: /help groups the commands by it, in this order."""

    WATCH = "watch"  # replication state, checks, charts
    SLOTS = "slots"
    REPAIR = "repair"  # repair and rebuild
    ALERTS = "alerts"
    ADMIN = "admin"  # audit, the demo's own controls
    YOU = "you"  # help, id, language


@dataclass(frozen=True)
class CommandSpec:
    """A chat command with its minimum role, declared right beside its handler.

    ``purpose`` and ``example`` are for /help: the group the command is listed in, and one
    command line that works at ``min_role`` (``/rebuild pg2 --dry-run``). ``role_note`` (an
    ``N_`` msgid) says what needs more than ``min_role`` ("an admin runs it").
    """

    name: str
    min_role: Role
    summary: str
    usage: str
    run: Handler
    changes_state: ChangesState = False
    role_with: RoleWith | None = None
    purpose: Purpose = Purpose.YOU
    example: str = ""
    role_note: str = ""

    def min_role_for(self, args: list[str]) -> tuple[Role, str]:
        """The role running with ``args`` needs (never below ``min_role``) and what for.

        Unparsable arguments need only ``min_role``: the handler refuses them itself.
        """
        base = (self.min_role, f"/{self.name}")
        if self.role_with is None:
            return base
        try:
            role, what = self.role_with(args)
        except Exception:  # noqa: BLE001 - bad input is the handler's to refuse
            return base
        return (role, what) if role > self.min_role else base

    def changes_state_with(self, args: list[str]) -> bool:
        """Whether running with ``args`` changes a server, a job or the alert state."""
        flag = self.changes_state
        return flag if isinstance(flag, bool) else flag(args)


@dataclass(frozen=True)
class ActionSpec:
    """What a confirmed button runs; the role is checked again at press time."""

    name: str
    min_role: Role
    run: ActionHandler
    changes_state: bool = False


@dataclass
class HandlerGroup:
    """The commands and confirmation actions of one feature module."""

    commands: list[CommandSpec] = field(default_factory=list)
    actions: list[ActionSpec] = field(default_factory=list)

    def command(
        self,
        name: str,
        min_role: Role,
        summary: str,
        usage: str,
        changes_state: ChangesState = False,
        role_with: RoleWith | None = None,
        *,
        purpose: Purpose,
        example: str,
        role_note: str = "",
    ) -> Callable[[Handler], Handler]:
        """Decorator: register ``fn`` as /name for users with at least ``min_role``."""

        def register(fn: Handler) -> Handler:
            self.commands.append(
                CommandSpec(
                    name,
                    min_role,
                    summary,
                    usage,
                    fn,
                    changes_state,
                    role_with,
                    purpose=purpose,
                    example=example,
                    role_note=role_note,
                )
            )
            return fn

        return register

    def action(
        self, name: str, min_role: Role, changes_state: bool = False
    ) -> Callable[[ActionHandler], ActionHandler]:
        """Decorator: register ``fn`` as the confirmed action ``name``."""

        def register(fn: ActionHandler) -> ActionHandler:
            self.actions.append(ActionSpec(name, min_role, fn, changes_state))
            return fn

        return register
