"""One entry point per kind of input: parse, check permissions, run, reply, audit.

Both transports call :class:`Dispatcher`; it is the single place where users are resolved,
roles are enforced and every request leaves exactly one audit row.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from bot.errors import NodeUnavailable, ReplbotError
from bot.models import AuditRecord, Outcome, User
from bot.services.registry import Services
from handlers import alerts, parsing, render
from handlers.base import ActionSpec, Chat, CommandContext, CommandSpec, Reply, Request

log = logging.getLogger(__name__)
MAX_AUDIT_ARGS = 500


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

    async def handle_command(self, request: Request, chat: Chat) -> None:
        """Run one text command end to end; never raises."""
        started = self.services.clock.monotonic()
        user = self.services.authz.user(request.user_id, request.user_name)
        name, args_text = _command_words(request.text)
        try:
            if not await self._admitted(user, request, chat, name, args_text, started):
                return
            name, args = parsing.split_command(request.text)
            spec = self.commands.get(name)
            if spec is None:
                await chat.send(Reply(render.unknown_command(name)))
                await self._audit(
                    user, request, name, args_text, Outcome.REFUSED, "unknown command", started
                )
                return
            self.services.authz.require(user, spec.min_role, f"/{name}")
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

    async def handle_button(self, request: Request, chat: Chat) -> None:
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
                self.services.authz.require(
                    user, alerts.BUTTON_ROLE, "acknowledging or muting alerts"
                )
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
            if kind == "cx":
                pending = confirmations.cancel(nonce, user.id)
                name = f"{pending.action}.cancel"
                await chat.notify("cancelled")
                if request.message_id is not None:
                    await chat.edit(request.message_id, Reply(render.cancelled(pending.action)))
                await self._audit(
                    user, request, name, _params(pending.params), Outcome.OK, "cancelled", started
                )
                return
            if kind != "cf":
                raise ReplbotError("this button is not valid")
            pending = confirmations.take(nonce, user.id)
            name = f"{pending.action}.confirm"
            action = self.actions.get(pending.action)
            if action is None:
                raise ReplbotError("this button is not valid")
            self.services.authz.require(user, action.min_role, pending.action)
            if action.changes_state:
                await self._intent(user, request, name, _params(pending.params), started)
            await chat.notify("confirmed")
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
        """Deny-by-default gate: unknown users and foreign chats run nothing."""
        if user.role is None:
            if request.is_private:
                await chat.send(Reply(render.refusal("you are not allowed to use this bot")))
            await self._audit(user, request, name, args, Outcome.REFUSED, "unknown user", started)
            return False
        if not self.services.authz.chat_allowed(request.chat_id):
            await chat.send(Reply(render.refusal("this chat is not allowed to use the bot")))
            await self._audit(
                user, request, name, args, Outcome.REFUSED, "chat not allowed", started
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
                exc.user_message,
                render.failure(exc.user_message),
            )
        elif isinstance(exc, ReplbotError):
            outcome, reason, text = (
                Outcome.REFUSED,
                exc.user_message,
                render.refusal(exc.user_message),
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
