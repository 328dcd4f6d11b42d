"""The Notifier port over python-telegram-bot's ``telegram.Bot``: sends alert messages.

It uses its own ``Bot`` (no rate limiter, no retries inside PTB): the delivery service decides
when to retry, so PTB's errors are mapped to domain errors here —

* ``RetryAfter`` (429)                       -> RetryLater(retry_after)
* ``TimedOut``, ``NetworkError`` (5xx, I/O)  -> DeliveryUnavailable (retried with back-off)
* ``ChatMigrated`` (400 migrate_to_chat_id)  -> ChatMoved(new_chat_id): the group is a supergroup
* ``Forbidden`` (403 kicked, blocked), 404,
  400 "chat not found" and kin               -> ChatRefused: the chat refuses the bot
* ``InvalidToken`` 401 "Unauthorized"        -> TokenRejected: no chat can be reached
* other ``BadRequest``, …                    -> DeliveryRejected (this message only, for good)

Two rejections are worked around once: a forum topic that no longer exists (the message goes
to the chat itself) and HTML Telegram cannot parse (sent as plain text instead).
"""

from __future__ import annotations

import html
import logging
import re
import warnings
from datetime import timedelta

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    ReplyParameters,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from bot.errors import (
    ChatMoved,
    ChatRefused,
    DeliveryRejected,
    DeliveryUnavailable,
    RetryLater,
    TokenRejected,
)
from bot.models import OutgoingMessage
from bot.phrases import Phrase

log = logging.getLogger(__name__)
_TAG = re.compile(r"<[^>]*>")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# 400 descriptions that mean the chat (not this message) refuses the bot.
_CHAT_REFUSALS = (
    "chat not found",
    "group chat was deactivated",
    "bot was kicked",
    "bot is not a member",
    "need administrator rights",
    "not enough rights to send",
    "have no rights to send",
    "chat_write_forbidden",
    "chat_restricted",
    "peer_id_invalid",
)


class TelegramNotifier:
    """Sends OutgoingMessages with a dedicated ``telegram.Bot``."""

    def __init__(self, token: str, base_url: str, timeout_s: float = 10.0) -> None:
        request = HTTPXRequest(
            connection_pool_size=4,
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            write_timeout=timeout_s,
            pool_timeout=timeout_s,
        )
        self._bot = Bot(token, base_url=base_url, request=request)

    async def send(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        """Send one message; map PTB's errors to the delivery errors."""
        try:
            return await self._send(chat_id, thread_id, message, ParseMode.HTML)
        except BadRequest as exc:
            text = exc.message.lower()
            if thread_id is not None and "thread not found" in text:
                log.warning(
                    "forum topic %s of chat %s is gone; sending to the chat", thread_id, chat_id
                )
                return await self._mapped(chat_id, None, message, ParseMode.HTML)
            if "parse entities" in text:
                log.error("Telegram could not parse an alert's HTML; sending it as plain text")
                plain = OutgoingMessage(html.unescape(_TAG.sub("", message.html)), message.buttons)
                return await self._mapped(chat_id, thread_id, plain, None)
            raise _mapped_error(exc, chat_id) from exc
        except TelegramError as exc:
            raise _mapped_error(exc, chat_id) from exc

    async def _mapped(
        self,
        chat_id: int,
        thread_id: int | None,
        message: OutgoingMessage,
        parse_mode: str | None,
    ) -> int:
        try:
            return await self._send(chat_id, thread_id, message, parse_mode)
        except TelegramError as exc:
            raise _mapped_error(exc, chat_id) from exc

    async def _send(
        self,
        chat_id: int,
        thread_id: int | None,
        message: OutgoingMessage,
        parse_mode: str | None,
    ) -> int:
        markup = None
        if message.buttons:
            markup = InlineKeyboardMarkup(
                [
                    [InlineKeyboardButton(b.label, callback_data=b.data) for b in row]
                    for row in message.buttons
                ]
            )
        sent = await self._bot.send_message(
            chat_id=chat_id,
            text=message.html,
            parse_mode=parse_mode,
            reply_markup=markup,
            message_thread_id=thread_id,
            link_preview_options=_NO_PREVIEW,
        )
        return sent.message_id

    async def send_photo(
        self,
        chat_id: int,
        thread_id: int | None,
        png: bytes,
        caption_html: str,
        reply_to: int | None = None,
    ) -> int:
        """Send a PNG (multipart) with a caption, as a reply to ``reply_to`` if given."""
        reply = (
            None
            if reply_to is None
            else ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
        )
        try:
            sent = await self._bot.send_photo(
                chat_id=chat_id,
                photo=png,
                caption=caption_html,
                parse_mode=ParseMode.HTML,
                message_thread_id=thread_id,
                reply_parameters=reply,
            )
        except TelegramError as exc:
            raise _mapped_error(exc, chat_id) from exc
        return sent.message_id

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._bot.shutdown()


def _mapped_error(exc: TelegramError, chat_id: int) -> Exception:
    if isinstance(exc, RetryAfter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PTB deprecates the int form in favour of timedelta
            value = exc.retry_after
        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
        return RetryLater(seconds)
    if isinstance(exc, TimedOut):
        return DeliveryUnavailable(Phrase.of("error.delivery.timeout"))
    if isinstance(exc, ChatMigrated):
        return ChatMoved(chat_id, int(exc.new_chat_id))
    if isinstance(exc, Forbidden):
        return ChatRefused(chat_id, exc.message)
    if isinstance(exc, InvalidToken):  # PTB raises it for 401 and for 404
        if "unauthorized" in exc.message.lower():
            return TokenRejected(Phrase.of("error.delivery.token", reason=exc.message))
        return ChatRefused(chat_id, exc.message)
    if isinstance(exc, BadRequest):
        if any(marker in exc.message.lower() for marker in _CHAT_REFUSALS):
            return ChatRefused(chat_id, exc.message)
        return DeliveryRejected(Phrase.of("error.delivery.rejected", reason=exc.message))
    if isinstance(exc, NetworkError):
        return DeliveryUnavailable(Phrase.of("error.delivery.unavailable", reason=exc.message))
    return DeliveryRejected(Phrase.of("error.delivery.rejected", reason=exc.message))
