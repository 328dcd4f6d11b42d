"""One entry point per kind of input: parse, check permissions, run, reply, audit.

Both transports call :class:`Dispatcher`; it is the single place where users are resolved,
roles are enforced and every request leaves exactly one audit row.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from bot.errors import NodeUnavailable, ReplbotError
from bot.models import AuditRecord, Outcome, PendingConfirmation, User
from bot.phrases import Phrase
from bot.services.registry import Services
from handlers import alerts, i18n, parsing, render
from handlers.base import ActionSpec, Chat, CommandContext, CommandSpec, Reply, Request
from handlers.render.phrases import say

log = logging.getLogger(__name__)
MAX_AUDIT_ARGS = 500
UNKNOWN_USER_WINDOW_S = 60.0  # at most one refusal reply and audit row per unknown user per window
_UNKNOWN_USERS_KEPT = 10_000
# In a private chat an unknown user's /start and /whoami answer with their numeric id, so a new
# team member can ask an admin to add them; nothing else runs (same rate limit as refusals).
_WAY_IN_COMMANDS = {"start", "whoami"}


class Dispatcher:
    """Routes requests to command handlers and confirmation actions."""

    def __init__(
        self,
        services: Services,
        commands: Mapping[str, CommandSpec],
        actions: Mapping[str, ActionSpec],
    ) -> None:
        self.services = services
        self.commands = dict(commands)
        self.actions = dict(actions)
        self.started_at = services.clock.time()  # commands sent well before this are not run
        # unknown user id -> (monotonic time of the last audited refusal, refusals since)
        self._unknown_users: dict[int, tuple[float, int]] = {}

    async def language_for(self, request: Request) -> str:
        """The reply language for ``request``: the user's /lang choice, else users[].language,
        else the Telegram client's language_code (if supported), else telegram.language."""
        store = self.services.languages
        if store is not None:
            try:
                chosen = await store.get(request.user_id)
            except Exception:
                log.exception("could not read the language of user %s", request.user_id)
                chosen = None
            if i18n.normalize(chosen):
                return i18n.normalize(chosen) or i18n.DEFAULT_LANGUAGE
        configured = next(
            (u.language for u in self.services.config.users if u.id == request.user_id), None
        )
        return (
            i18n.normalize(configured)
            or i18n.normalize(request.language_code)
            or i18n.normalize(self.services.config.telegram.language)
            or i18n.DEFAULT_LANGUAGE
        )

    async def handle_command(self, request: Request, chat: Chat) -> None:
        """Run one text command end to end, replying in the requester's language."""
        with i18n.language(await self.language_for(request)):
            await self._handle_command(request, chat)

    async def handle_button(self, request: Request, chat: Chat) -> None:
        """Run a button press end to end, replying in the presser's language."""
        with i18n.language(await self.language_for(request)):
            await self._handle_button(request, chat)

    async def _handle_command(self, request: Request, chat: Chat) -> None:
        """Run one text command end to end; never raises."""
        started = self.services.clock.monotonic()
        user = self.services.authz.user(request.user_id, request.user_name)
        name, args_text = _command_words(request.text)
        try:
            if not await self._admitted(user, request, chat, name, args_text, started):
                return
            if not await self._runnable(user, request, chat, name, args_text, started):
                return
            name, args = parsing.split_command(request.text)
            spec = self.commands.get(name)
            if spec is None:
                await chat.send(Reply(render.unknown_command(name)))
                await self._audit(
                    user, request, name, args_text, Outcome.REFUSED, "unknown command", started
                )
                return
            self.services.authz.require(user, *spec.min_role_for(args))
            if spec.changes_state_with(args):
                await self._intent(user, request, name, args_text, started)
            ctx = CommandContext(
                self.services, user, request, chat, args, commands=tuple(self.commands.values())
            )
            await spec.run(ctx)
            await self._audit(
                user,
                request,
                name,
                ctx.audit_args or args_text,
                Outcome.OK,
                ctx.audit_note,
                started,
            )
        except Exception as exc:  # noqa: BLE001 - the one place errors become replies
            await self._fail(exc, user, request, chat, name, args_text, started)

    async def _handle_button(self, request: Request, chat: Chat) -> None:
        """Run a confirmation button press end to end; never raises."""
        started = self.services.clock.monotonic()
        user = self.services.authz.user(request.user_id, request.user_name)
        data = request.button_data or ""
        kind, _, nonce = data.partition(":")
        name = "button"
        try:
            if not await self._admitted(user, request, chat, name, "", started):
                return
            if kind == alerts.BUTTON_PREFIX:
                name = alerts.button_name(nonce)
                self.services.authz.require(user, alerts.BUTTON_ROLE, name)
                if alerts.BUTTON_CHANGES_STATE:
                    await self._intent(user, request, name, nonce, started)
                ctx = CommandContext(
                    self.services, user, request, chat, [], commands=tuple(self.commands.values())
                )
                await alerts.press(ctx, nonce)
                await self._audit(
                    user, request, name, ctx.audit_args or nonce, Outcome.OK, "", started
                )
                return
            confirmations = self.services.confirmations

            def authorize(pending: PendingConfirmation) -> None:
                """Before a nonce is consumed: the action exists and the presser may run it."""
                nonlocal name
                name = f"{pending.action}.{'cancel' if kind == 'cx' else 'confirm'}"
                action = self.actions.get(pending.action)
                if action is None:
                    raise ReplbotError(Phrase.of("error.button.invalid"))
                self.services.authz.require(user, action.min_role, pending.action)

            if kind == "cx":
                pending = confirmations.cancel(nonce, user.id, authorize)
                name = f"{pending.action}.cancel"
                await chat.notify(render.toast_cancelled())
                if request.message_id is not None:
                    await chat.edit(request.message_id, Reply(render.cancelled(pending.action)))
                await self._audit(
                    user, request, name, _params(pending.params), Outcome.OK, "cancelled", started
                )
                return
            if kind != "cf":
                raise ReplbotError(Phrase.of("error.button.invalid"))
            pending = confirmations.take(nonce, user.id, authorize)
            action = self.actions[pending.action]
            if action.changes_state:
                await self._intent(user, request, name, _params(pending.params), started)
            await chat.notify(render.toast_confirmed())
            ctx = CommandContext(
                self.services, user, request, chat, [], commands=tuple(self.commands.values())
            )
            await action.run(ctx, pending.params)
            await self._audit(
                user,
                request,
                name,
                ctx.audit_args or _params(pending.params),
                Outcome.OK,
                ctx.audit_note,
                started,
            )
        except Exception as exc:  # noqa: BLE001 - as above
            await self._fail(exc, user, request, chat, name, data[:64], started, button=True)

    async def _admitted(
        self, user: User, request: Request, chat: Chat, name: str, args: str, started: float
    ) -> bool:
        """Deny-by-default gate: unknown users and foreign chats run nothing.

        Unknown users get at most one reply and one audit row per UNKNOWN_USER_WINDOW_S; the
        next row counts the refusals suppressed in between.
        """
        if user.role is None:
            suppressed = self._unknown_user_refusals(user.id)
            if suppressed is None:
                return False
            told_id = request.is_private and name in _WAY_IN_COMMANDS
            if told_id:
                await chat.send(Reply(render.unknown_user_id(user.id)))
            elif request.is_private:
                await chat.send(Reply(render.refusal(render.not_allowed())))
            reason = "unknown user" + ("; told their id" if told_id else "")
            if suppressed:
                reason += f" ({suppressed} more refused since the last row)"
            await self._audit(user, request, name, args, Outcome.REFUSED, reason, started)
            return False
        if not self.services.authz.chat_allowed(request.chat_id):
            await chat.send(Reply(render.refusal(say(Phrase.of("error.auth.chat")))))
            await self._audit(
                user, request, name, args, Outcome.REFUSED, "chat not allowed", started
            )
            return False
        return True

    def _unknown_user_refusals(self, user_id: int) -> int | None:
        """None to stay silent; else how many refusals of ``user_id`` went unreported."""
        now = self.services.clock.monotonic()
        last = self._unknown_users.get(user_id)
        if last is not None and now - last[0] < UNKNOWN_USER_WINDOW_S:
            self._unknown_users[user_id] = (last[0], last[1] + 1)
            return None
        if len(self._unknown_users) >= _UNKNOWN_USERS_KEPT:
            self._unknown_users = {
                uid: seen
                for uid, seen in self._unknown_users.items()
                if now - seen[0] < UNKNOWN_USER_WINDOW_S
            }
        self._unknown_users[user_id] = (now, 0)
        return last[1] if last is not None else 0

    async def _runnable(
        self, user: User, request: Request, chat: Chat, name: str, args: str, started: float
    ) -> bool:
        """Commands not meant for this bot, sent while it was offline, or forwarded run nothing.

        A command addressed to another bot (``/cmd@other_bot``) gets no reply: in a group it
        belongs to that bot. The transport fills the fields checked here; the console does not.
        """
        mention = parsing.addressed_bot(request.text)
        if (
            mention is not None
            and request.bot_username is not None
            and mention.lower() != request.bot_username.lower()
        ):
            reason = f"addressed to @{mention}"
            await self._audit(user, request, name, args, Outcome.REFUSED, reason, started)
            return False
        grace = self.services.config.telegram.offline_grace_s
        if request.sent_at is not None and request.sent_at < self.started_at - grace:
            await chat.send(Reply(render.not_run_offline()))
            reason = "sent while the bot was offline"
            await self._audit(user, request, name, args, Outcome.REFUSED, reason, started)
            return False
        if request.forwarded:
            await chat.send(Reply(render.not_run_forwarded()))
            await self._audit(
                user, request, name, args, Outcome.REFUSED, "forwarded message", started
            )
            return False
        return True

    async def _fail(
        self,
        exc: Exception,
        user: User,
        request: Request,
        chat: Chat,
        name: str,
        args: str,
        started: float,
        button: bool = False,
    ) -> None:
        if isinstance(exc, NodeUnavailable):
            outcome, reason, text = (
                Outcome.FAILED,
                render.error_audit_reason(exc),
                render.failure(say(exc.phrase)),
            )
        elif isinstance(exc, ReplbotError):
            outcome, reason, text = (
                Outcome.REFUSED,
                render.error_audit_reason(exc),
                render.refusal(say(exc.phrase)),
            )
        else:
            reference = secrets.token_hex(3)
            log.exception("internal error ref %s in /%s", reference, name)
            outcome, reason = Outcome.FAILED, f"internal error ref {reference}"
            text = render.internal_error(reference)
        try:
            if button:
                await chat.notify(render.to_plain_text(text)[:190])
            await chat.send(Reply(text))
        except Exception:
            log.exception("could not deliver the error reply for /%s", name)
        await self._audit(user, request, name, args, outcome, reason, started)

    async def _intent(
        self, user: User, request: Request, command: str, args: str, started: float
    ) -> None:
        """Audit an "intent" row before a state-changing command or action runs.

        Its outcome row follows as usual; if the process dies (or the task is cancelled)
        in between, the intent row still shows what was started. A failed write raises, so
        nothing runs unaudited.
        """
        await self._audit(user, request, command, args, Outcome.INTENT, "", started)

    async def _audit(
        self,
        user: User,
        request: Request,
        command: str,
        args: str,
        outcome: Outcome,
        reason: str,
        started: float,
    ) -> None:
        elapsed_ms = int((self.services.clock.monotonic() - started) * 1000)
        record = AuditRecord(
            user_id=user.id,
            user_name=user.name,
            chat_id=request.chat_id,
            command=command,
            args=args[:MAX_AUDIT_ARGS],
            outcome=outcome,
            reason=reason[:MAX_AUDIT_ARGS],
            duration_ms=elapsed_ms,
        )
        try:
            await self.services.audit.append(record)
        except Exception:
            log.exception("AUDIT WRITE FAILED for /%s by %s", command, user.id)
            raise


def _command_words(text: str) -> tuple[str, str]:
    """Best-effort (command, args) for the audit row, even for malformed input."""
    head, _, rest = text.strip().partition(" ")
    name = head.lstrip("/").split("@", 1)[0][:40] or "?"
    return name, " ".join(rest.split())  # one line: audit rows render inside one tag


def _params(params: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))
