"""Formatting shared by every feature: escaping, sizes and durations, generic outcomes,
splitting a reply at Telegram's limit, confirmation footers, generic buttons and toasts."""

from __future__ import annotations

import html
import re

from bot.models import (
    Alert,
    CheckLevel,
)
from handlers.i18n import _

TELEGRAM_LIMIT = 4096


MAX_SLOT_LINES = 50  # per cluster in /slots


MAX_AUDIT_LINES = 100  # rows shown by /audit


AUDIT_FIELD_CHARS = 100  # each free-text field of an audit row, on one line


OK, WARN, FAIL, INFO = "✅", "⚠️", "❌", "ℹ️"


_LEVEL_ICON = {CheckLevel.OK: OK, CheckLevel.WARN: WARN, CheckLevel.FAIL: FAIL}


def esc(value: object) -> str:
    """HTML-escape any value for Telegram's HTML parse mode."""
    return html.escape(str(value), quote=True)


def code(value: object) -> str:
    """An escaped value in monospace."""
    return f"<code>{esc(value)}</code>"


def human_bytes(value: int | None) -> str:
    """1536 -> '1.5 kB'; None -> '–'."""
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_seconds(value: float | None) -> str:
    """A duration in seconds for the chat, or '–' when unknown: the one duration format."""
    return "–" if value is None else human_duration(value)


def refusal(message: str) -> str:
    """A refused request (bad input, permissions, stale buttons)."""
    return f"{FAIL} {esc(message)}"


def failure(message: str) -> str:
    """A request that was allowed but failed (node down, server error)."""
    return f"{FAIL} " + _("failed: {message}").format(message=esc(message))


def internal_error(reference: str) -> str:
    """An unexpected error; the reference id finds the traceback in the log."""
    return f"{FAIL} " + _(
        "internal error (ref {reference}); the details are in the bot's log"
    ).format(reference=esc(reference))


def not_run_offline() -> str:
    """Reply to a command that waited in Telegram's queue while the bot was not running."""
    return f"{FAIL} " + _("not run: sent while the bot was offline")


def not_run_forwarded() -> str:
    """Reply to a forwarded command: only what a user types themselves is run."""
    return f"{FAIL} " + _("not run: forwarded commands are not accepted; type the command yourself")


def one_line(value: object, limit: int | None = None) -> str:
    """``value`` with all whitespace runs (newlines too) as single spaces, cut at ``limit``."""
    text = " ".join(str(value).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def unknown_command(name: str) -> str:
    """Reply to a command the bot does not have."""
    return f"{FAIL} " + _("unknown command /{name}; see /help").format(name=esc(name))


def _approver(second_approver: bool) -> str:
    """Who may press a confirmation button."""
    return _("Another admin must approve") if second_approver else _("Only you can confirm")


def cancelled(what: str) -> str:
    """A confirmation the user withdrew."""
    return f"{INFO} " + _("cancelled: {what}").format(what=esc(what))


_TAG = re.compile(r"<[^>]*>")


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split HTML ``text`` at line boundaries into chunks of at most ``limit`` characters.

    Every chunk is well-formed on its own, whatever the text holds: a tag still open where a
    chunk ends is closed there and opened again at the start of the next chunk. A line that
    does not fit in a chunk of its own (longer than ``limit``, with the reopened tags) loses its
    markup and is cut between characters, never inside an HTML entity, into chunks of its own.
    """
    chunks: list[str] = []
    reopened: list[str] = []  # start tags open at the beginning of the current chunk
    stack: list[str] = []  # start tags open after the current chunk's body
    body: str | None = None
    for line in text.split("\n"):
        after = _open_tags_after(stack, line)
        if body is not None:
            candidate = body + "\n" + line
            if len(_wrap(reopened, candidate, after)) <= limit:
                body, stack = candidate, after
                continue
            chunks.append(_wrap(reopened, body, stack))
        if len(_wrap(stack, line, after)) <= limit:
            reopened, body, stack = stack, line, after
        else:
            chunks.extend(_cut_long_line(line, limit))
            reopened, body, stack = after, None, after
    if body is not None or not chunks:
        chunks.append(_wrap(reopened, body or "", stack))
    return chunks


def _cut_long_line(line: str, limit: int) -> list[str]:
    plain = html.unescape(_TAG.sub("", line))
    pieces: list[str] = []
    current = ""
    for char in plain:
        escaped = esc(char)
        if len(current) + len(escaped) > limit:
            pieces.append(current)
            current = ""
        current += escaped
    if current:
        pieces.append(current)
    return pieces


_TAG_NAME = re.compile(r"^<(/?)\s*([A-Za-z][A-Za-z0-9-]*)")


def _open_tags_after(stack: list[str], html_text: str) -> list[str]:
    """The start tags still open after ``html_text``, given those open before it."""
    opened = list(stack)
    for tag in _TAG.findall(html_text):
        match = _TAG_NAME.match(tag)
        if match is None:
            continue
        if not match.group(1):
            opened.append(tag)
            continue
        name = match.group(2).lower()
        for depth in range(len(opened) - 1, -1, -1):
            if _tag_name(opened[depth]) == name:
                del opened[depth]
                break
    return opened


def _tag_name(start_tag: str) -> str:
    match = _TAG_NAME.match(start_tag)
    return match.group(2).lower() if match is not None else ""


def _wrap(reopened: list[str], body: str, still_open: list[str]) -> str:
    """A chunk: the tags open before it, its body, and end tags for what is still open."""
    closing = "".join(f"</{_tag_name(tag)}>" for tag in reversed(still_open))
    return "".join(reopened) + body + closing


def to_plain_text(text: str) -> str:
    """Telegram HTML -> plain text, for the console transport."""
    return html.unescape(_TAG.sub("", text))


def _expiry(ttl_s: float, who: str | None = None) -> str:
    """The last line of every confirmation question."""
    return _("{who}; the button expires in {duration}.").format(
        who=who or _("Only you can confirm"), duration=human_duration(ttl_s)
    )


def _number(alert: Alert, name: str) -> float | None:
    value = alert.figures.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bytes_figure(alert: Alert, name: str) -> str:
    value = _number(alert, name)
    return human_bytes(int(value)) if value is not None else "–"


def _seconds_figure(alert: Alert, name: str) -> str:
    return human_seconds(_number(alert, name))


def human_duration(seconds: float) -> str:
    """The one duration format: 2.345 -> '2.3 s', 42 -> '42 s', 150 -> '2 min 30 s',
    5400 -> '1 h 30 min', 90000 -> '1 d 1 h' (at most two units, rounded to the second)."""
    second = _("s")
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} {second}"
    if seconds < 60:
        return f"{seconds:.0f} {second}"
    total = round(seconds)
    parts = []
    for unit, size in ((_("d"), 86400), (_("h"), 3600), (_("min"), 60), (second, 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2])


def button_cancel() -> str:
    """Label of every Cancel button."""
    return _("Cancel")


def toast_confirmed() -> str:
    """Toast answering a confirmation button."""
    return _("confirmed")


def toast_cancelled() -> str:
    """Toast answering a Cancel button."""
    return _("cancelled")
