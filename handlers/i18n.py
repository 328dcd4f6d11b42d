"""Message catalogs, and the language of the reply being rendered.

Every user-facing string of handlers/render/* (and the command summaries, button labels, the
demo console's own lines) goes through :func:`_` or :func:`ngettext` here. English is the
source language: the msgids are the English texts. Russian lives in
``handlers/locale/ru/LC_MESSAGES/replbot.po``.

*Which* language: a context variable, so render functions keep their signatures. The
dispatcher sets it for each request (the user's ``/lang``, else ``users[].language``, else the
Telegram ``language_code``, else ``telegram.language``), the alert renderer for each alert
message (the cluster's ``language``, else ``telegram.language``), the demo from ``--lang``.
A task started while handling a request (a rebuild's progress messages) inherits it: asyncio
copies the context into new tasks.

*Where .mo files are built*: by the developer who edits a .po, and committed beside it
(``replbot.mo``); the bot reads it with the standard library's gettext, so Babel is a
development tool, not a runtime dependency. tests/unit/test_i18n.py compiles every .po with
Babel and fails if the committed .mo differs, and extracts every msgid from the code and fails
on one the Russian catalog lacks or leaves empty. To update the catalog::

    pybabel extract --no-location --sort-output -k _ -k ngettext:1,2 -k N_ -k command:3 \
        -o /tmp/replbot.pot handlers
    pybabel update --no-location -i /tmp/replbot.pot -d handlers/locale -D replbot -l ru
    # translate the new entries in handlers/locale/ru/LC_MESSAGES/replbot.po, then
    pybabel compile -d handlers/locale -D replbot
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from bot.config import LANGUAGES

DEFAULT_LANGUAGE = "en"
DOMAIN = "replbot"
LOCALE_DIR = Path(__file__).parent / "locale"
_current: ContextVar[str] = ContextVar("replbot_language", default=DEFAULT_LANGUAGE)


def normalize(code: str | None) -> str | None:
    """A supported language for a Telegram ``language_code`` or a setting ('ru-RU' -> 'ru');
    None when unknown or unsupported."""
    if not code:
        return None
    base = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return base if base in LANGUAGES else None


def catalog_path(language: str, suffix: str = ".po") -> Path:
    """The .po (or, with ``suffix=".mo"``, the compiled) catalog of ``language``."""
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}{suffix}"


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog of ``language`` (English: the msgids themselves)."""
    if language == DEFAULT_LANGUAGE or language not in LANGUAGES:
        return gettext.NullTranslations()
    with catalog_path(language, ".mo").open("rb") as mo:
        return gettext.GNUTranslations(mo)


def current_language() -> str:
    """The language replies are rendered in right now."""
    return _current.get()


@contextmanager
def language(code: str) -> Iterator[None]:
    """Render in ``code`` inside the block (unsupported codes fall back to English)."""
    token = _current.set(normalize(code) or DEFAULT_LANGUAGE)
    try:
        yield
    finally:
        _current.reset(token)


def set_language(code: str) -> None:
    """Render in ``code`` from now on in this context (the demo console's whole session)."""
    _current.set(normalize(code) or DEFAULT_LANGUAGE)


def _(message: str) -> str:
    """``message`` in the current language."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form of ``singular``/``plural`` for ``count`` in the current language (Russian has
    three: 1 реплика, 2 реплики, 5 реплик)."""
    return translations(_current.get()).ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Mark ``message`` for the catalog without translating it now (command summaries are
    declared at import; they are translated where they are shown)."""
    return message
