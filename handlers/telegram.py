"""The Telegram transport: python-telegram-bot 22 Application around the Dispatcher.

Only this module (and the composition root) knows Telegram types. Replies use HTML parse mode,
are split at 4096 characters, and go through PTB's AIORateLimiter, which retries on 429.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackContext,
    CallbackQueryHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.services.registry import Services
from handlers import render
from handlers.base import Button, Reply, Request
from handlers.dispatch import Dispatcher

log = logging.getLogger(__name__)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class BotData:
    """Typed ``bot_data``: the dispatcher that serves every update."""

    def __init__(self) -> None:
        self.dispatcher: Dispatcher | None = None


class ReplbotContext(CallbackContext[ExtBot[Any], dict[Any, Any], dict[Any, Any], BotData]):
    """CallbackContext whose bot_data carries the dispatcher (no module globals)."""

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher set by :func:`build_application`."""
        dispatcher = self.bot_data.dispatcher
        if dispatcher is None:
            raise RuntimeError("application was built without a dispatcher")
        return dispatcher


ReplbotApplication = Application[
    ExtBot[Any], ReplbotContext, dict[Any, Any], dict[Any, Any], BotData, Any
]


class TelegramChat:
    """The Chat port for one Telegram chat (and, for buttons, one callback query)."""

    def __init__(
        self,
        bot: ExtBot[Any],
        chat_id: int,
        thread_id: int | None = None,
        query: CallbackQuery | None = None,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._thread_id = thread_id
        self._query = query

    async def send(self, reply: Reply) -> int:
        """Send ``reply``, split at 4096 characters; buttons go on the last part."""
        chunks = render.split_message(reply.html)
        message_id = 0
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            message = await self._bot.send_message(
                chat_id=self._chat_id,
                text=chunk,
                parse_mode=ParseMode.HTML,
                reply_markup=_keyboard(reply.buttons) if last else None,
                message_thread_id=self._thread_id,
                link_preview_options=_NO_PREVIEW,
            )
            message_id = message.message_id
        return message_id

    async def edit(self, message_id: int, reply: Reply) -> None:
        """Edit a message in place; an identical edit (Telegram's 400) is not an error."""
        text = render.split_message(reply.html)[0]
        try:
            await self._bot.edit_message_text(
                chat_id=self._chat_id,
                message_id=message_id,
                text=text,
                parse_mode=ParseMode.HTML,
                reply_markup=_keyboard(reply.buttons),
                link_preview_options=_NO_PREVIEW,
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise

    async def notify(self, text: str) -> None:
        """Answer the pressed button with a short toast."""
        if self._query is not None:
            await self._query.answer(text[:200])

    async def send_photo(self, png: bytes, caption_html: str) -> int:
        """Send a PNG (multipart upload) with its caption."""
        message = await self._bot.send_photo(
            chat_id=self._chat_id,
            photo=png,
            caption=caption_html,
            parse_mode=ParseMode.HTML,
            message_thread_id=self._thread_id,
        )
        return message.message_id

    async def set_user_menu(self, user_id: int, commands: Mapping[str, str]) -> None:
        """setMyCommands for the private chat of ``user_id`` (BotCommandScopeChat)."""
        await self._bot.set_my_commands(
            [BotCommand(name, text) for name, text in commands.items()],
            scope=BotCommandScopeChat(user_id),
        )


def _keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.label, callback_data=b.data) for b in buttons]]
    )


def _request(
    update: Update, bot_username: str | None, text: str = "", data: str | None = None
) -> Request | None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return None
    name = user.username or user.full_name or str(user.id)
    message_id = None
    if update.callback_query is not None and update.callback_query.message is not None:
        message_id = update.callback_query.message.message_id
    message = update.message  # a typed command (None for button presses)
    return Request(
        user_id=user.id,
        user_name=name,
        chat_id=chat.id,
        chat_type=chat.type,
        text=text,
        button_data=data,
        message_id=message_id,
        sent_at=message.date.timestamp() if message is not None else None,
        forwarded=message is not None and message.forward_origin is not None,
        bot_username=bot_username,
        language_code=user.language_code,
    )


async def _on_command(update: Update, context: ReplbotContext) -> None:
    message = update.effective_message
    if message is None or not message.text:
        return
    request = _request(update, context.bot.username, text=message.text)
    if request is None:
        return
    thread_id = message.message_thread_id if message.is_topic_message else None
    chat = TelegramChat(context.bot, request.chat_id, thread_id)
    await context.dispatcher.handle_command(request, chat)


async def _on_button(update: Update, context: ReplbotContext) -> None:
    query = update.callback_query
    if query is None:
        return
    request = _request(update, context.bot.username, data=query.data or "")
    if request is None:
        await query.answer()
        return
    chat = TelegramChat(context.bot, request.chat_id, None, query)
    await context.dispatcher.handle_button(request, chat)


async def _on_error(update: object, context: ReplbotContext) -> None:
    log.error("error while handling an update", exc_info=context.error)


class _PollRecorder(HTTPXRequest):
    """PTB's getUpdates connection (pool of 1, as PTB builds it) that reports each answered
    poll, so /healthz can tell a bot that still hears Telegram from one that does not."""

    def __init__(self, on_success: Callable[[], None]) -> None:
        super().__init__(connection_pool_size=1, http_version="1.1")
        self._on_success = on_success

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(*args, **kwargs)
        if code == 200:
            self._on_success()
        return code, payload


def build_application(
    dispatcher: Dispatcher,
    token: str,
    base_url: str,
    commands: Mapping[str, str],
    concurrent_updates: int = 8,
    on_poll_ok: Callable[[], None] | None = None,
    localized_commands: Mapping[str, Mapping[str, str]] | None = None,
    chat_commands: Mapping[int, Mapping[str, str]] | None = None,
) -> ReplbotApplication:
    """A configured PTB Application: handlers, rate limiter, setMyCommands at start.

    ``on_poll_ok`` is called after every getUpdates that Telegram answered (for /healthz).
    ``localized_commands`` (language code -> menu) are set for clients in that language;
    ``chat_commands`` (private chat id -> menu) give each configured user the commands of
    their role, in their language (BotCommandScopeChat); ``commands`` is the default menu
    (groups, and anyone else).
    """

    async def post_init(app: ReplbotApplication) -> None:
        await app.bot.set_my_commands([BotCommand(name, text) for name, text in commands.items()])
        for language, menu in (localized_commands or {}).items():
            await app.bot.set_my_commands(
                [BotCommand(name, text) for name, text in menu.items()], language_code=language
            )
        for chat_id, menu in (chat_commands or {}).items():
            await app.bot.set_my_commands(
                [BotCommand(name, text) for name, text in menu.items()],
                scope=BotCommandScopeChat(chat_id),
            )

    context_types = ContextTypes(context=ReplbotContext, bot_data=BotData)
    builder = ApplicationBuilder()
    if on_poll_ok is not None:
        builder = builder.get_updates_request(_PollRecorder(on_poll_ok))
    app: ReplbotApplication = (
        builder.token(token)
        .base_url(base_url)
        .context_types(context_types)
        .rate_limiter(AIORateLimiter(max_retries=3))
        .job_queue(None)  # unused: the monitor and rebuilds own their tasks
        .concurrent_updates(concurrent_updates)
        .post_init(post_init)
        .build()
    )
    app.bot_data.dispatcher = dispatcher
    app.add_handler(MessageHandler(filters.COMMAND, _on_command))
    app.add_handler(CallbackQueryHandler(_on_button))
    app.add_error_handler(_on_error)
    return app


ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


async def announce_unfinished_rebuilds(services: Services, app: ReplbotApplication) -> None:
    """At start-up: mark rebuilds left running as interrupted and tell the alert chats."""
    reports = await services.rebuild.recover()
    for job, inspection in reports:
        log.warning("rebuild job %s of %s was interrupted: %s", job.id, job.node, inspection)
        for chat_id in services.config.telegram.alert_chat_ids:
            try:
                await TelegramChat(app.bot, chat_id).send(
                    Reply(render.rebuild_interrupted(job, inspection))
                )
            except TelegramError:
                log.exception("could not tell chat %s about interrupted job %s", chat_id, job.id)
