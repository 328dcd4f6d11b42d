"""/help, /whoami, /audit."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.errors import InvalidInput, ReplbotError
from bot.models import Role
from bot.phrases import Phrase
from handlers import i18n, parsing, render
from handlers.base import CommandContext, CommandSpec, HandlerGroup, Purpose, Reply

log = logging.getLogger(__name__)
group = HandlerGroup()


@group.command(
    "help",
    Role.VIEWER,
    "the commands you may run",
    "/help",
    purpose=Purpose.YOU,
    example="/help",
)
async def help_command(ctx: CommandContext) -> None:
    """List the commands the caller's role allows, grouped by what they do."""
    assert ctx.user.role is not None
    allowed = [
        render.HelpEntry(
            spec.usage, spec.summary, spec.min_role, spec.example, spec.purpose, spec.role_note
        )
        for spec in ctx.commands
        if ctx.user.role >= spec.min_role
    ]
    await ctx.chat.send(Reply(render.help_text(ctx.user, allowed)))


@group.command(
    "start", Role.VIEWER, "same as /help", "/start", purpose=Purpose.YOU, example="/start"
)
async def start(ctx: CommandContext) -> None:
    """Telegram sends /start when a user opens the bot."""
    await help_command(ctx)


@group.command(
    "whoami",
    Role.VIEWER,
    "your Telegram id and role",
    "/whoami",
    purpose=Purpose.YOU,
    example="/whoami",
)
async def whoami(ctx: CommandContext) -> None:
    """Show the caller's id and role."""
    parsing.no_arguments(ctx.args)
    await ctx.chat.send(Reply(render.whoami(ctx.user, ctx.request.chat_id)))


@group.command(
    "lang",
    Role.VIEWER,
    "the language of your replies: ru or en",
    "/lang [ru|en]",
    purpose=Purpose.YOU,
    example="/lang ru",
)
async def lang(ctx: CommandContext) -> None:
    """Show or choose (persistently, per Telegram user) the language of the caller's replies."""
    if not ctx.args:
        await ctx.chat.send(Reply(render.language_current(i18n.current_language())))
        return
    chosen = i18n.normalize(ctx.args[0]) if len(ctx.args) == 1 else None
    if chosen is None:
        raise InvalidInput(Phrase.of("error.lang.usage"))
    store = ctx.services.languages
    if store is None:
        raise ReplbotError(Phrase.of("error.lang.no_store"))
    await store.set(ctx.user.id, chosen)
    ctx.audit_args = chosen
    with i18n.language(chosen):
        menu = private_menu(ctx.commands, ctx.user.role)
    try:  # the choice is stored; a menu left in the old language is no reason to say otherwise
        if menu:
            await ctx.chat.set_user_menu(ctx.user.id, menu)
    except Exception:  # logged; the next start sets the menu again (from the stored choice)
        log.warning("could not refresh the command menu of user %s", ctx.user.id, exc_info=True)
    with i18n.language(chosen):
        await ctx.chat.send(Reply(render.language_set(chosen)))


def private_menu(commands: Iterable[CommandSpec], role: Role | None) -> dict[str, str]:
    """A private chat's command menu in the current language: command name -> summary, the
    commands ``role`` may run (all with None), without /start (Telegram sends it itself)."""
    return {
        spec.name: i18n._(spec.summary)
        for spec in commands
        if spec.name != "start" and (role is None or role >= spec.min_role)
    }


@group.command(
    "audit",
    Role.ADMIN,
    "the last N audit entries",
    "/audit [N]",
    purpose=Purpose.ADMIN,
    example="/audit 20",
)
async def audit(ctx: CommandContext) -> None:
    """Show the newest audit rows."""
    limit = parsing.audit_limit(ctx.args)
    entries = await ctx.services.audit.recent(limit)
    await ctx.chat.send(Reply(render.audit(entries)))
