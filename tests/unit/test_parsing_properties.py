"""Property tests: arbitrary arguments through the real Dispatcher on fake ports.

For every command and any argument text: the dispatcher never raises, exactly one audit
outcome row is written (a state-changing command may write an "intent" row before it), a
reply is sent, every reply is valid Telegram HTML that splits into chunks of at most 4096
characters, and invalid arguments are refused with the reason before any SQL runs.

Hypothesis runs synchronous test functions; each example drives the dispatcher with
``asyncio.run`` on fresh fakes (about 0.1 ms of loop overhead per example).
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Sequence

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.models import AuditRecord, Outcome
from handlers.base import Request
from handlers.parsing import MAX_ARGS_TEXT
from handlers.render import TELEGRAM_LIMIT, esc, split_message, to_plain_text
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import ADMIN_ID, Bot, FakeChat, make_bot, make_config

CONFIG = make_config()  # clusters "main" (pg1; pg2, pg3) and "dr" (dr1; dr2)
CLUSTERS = [c.name for c in CONFIG.clusters]
SLOT_RE = re.compile(r"[a-z0-9_]{1,63}")
CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
PROPERTY = settings(max_examples=1000, deadline=None)

# --- argument text -----------------------------------------------------------------------------

_MEANINGFUL = [
    *CLUSTERS,
    "nowhere",
    "pg2",
    "old_slot",
    "new_slot",
    "Pg-2",
    "a" * 63,
    "a" * 64,
    "1",
    "20",
    "200",
    "201",
    "0",
    "-1",
    "²",
    "١٢",
    "<b>",
    "</code>",
    "&amp;",
    "&",
    "'",
    '"',
    "main\n",
    "main.dr",
    "_x",
]
_HOSTILE_CHARS = st.sampled_from(
    [*"<>&\"'/\\ _-.\n\t;=:@#%*`", "\u00a0", "\u2028", "\x1c", "\u200b", "é", "😀"]
)
# Telegram delivers UTF-8: any code point but the lone surrogates UTF-8 cannot carry.
_ANY_CHAR = st.characters(codec="utf-8")
_SLOT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_CLUSTER_CHARS = _SLOT_CHARS + "ABCXYZ.-"
# Cheap strategies on purpose: 8 x 1000 examples must stay well under a minute.
words = st.one_of(
    st.sampled_from(_MEANINGFUL),
    st.text(_SLOT_CHARS, min_size=1, max_size=70),  # slot-like, some too long
    st.text(_CLUSTER_CHARS, min_size=1, max_size=12),  # cluster-like
    st.text(st.one_of(_HOSTILE_CHARS, _ANY_CHAR), min_size=1, max_size=12),
)
args_texts = st.one_of(
    st.just(""),
    st.text(_ANY_CHAR, max_size=40),  # arbitrary unicode, whitespace of every kind included
    st.lists(words, min_size=1, max_size=4).map(" ".join),
    st.builds(  # many words
        lambda ws, n: " ".join(ws * n), st.lists(words, min_size=1, max_size=6), st.integers(3, 80)
    ),
    st.builds(lambda w, n: w * n, words, st.integers(50, 1500)),  # very long
)


def command_text(command: str, args: str, mention: bool) -> str:
    head = f"/{command}@replbot_test_bot" if mention else f"/{command}"
    return f"{head} {args}"


# --- the rules, restated from the command usages -----------------------------------------------


def _cluster_problem(word: str) -> str | None:
    if word in CLUSTERS:
        return None
    if CLUSTER_RE.fullmatch(word):
        return "unknown cluster"
    return "invalid cluster name"


def expected_problem(command: str, text: str) -> str | None:
    """Why ``text`` must be refused before anything runs, or None when it is valid."""
    if len(text) > MAX_ARGS_TEXT:
        return "command too long"
    args = text.split()[1:]
    if command in {"status", "slots", "check"}:
        if len(args) > 1:
            return "too many arguments"
        return _cluster_problem(args[0]) if args else None
    if command in {"createslot", "dropslot"}:
        if not 1 <= len(args) <= 2:
            return f"usage: /{command} NAME [cluster]"
        if not SLOT_RE.fullmatch(args[0]):
            return "invalid slot name"
        if len(args) == 2:
            return _cluster_problem(args[1])
        return "several clusters are configured" if len(CLUSTERS) > 1 else None
    if command == "audit":
        if not args:
            return None
        if len(args) == 1 and args[0].isdecimal() and 1 <= int(args[0]) <= 200:
            return None
        return "usage: /audit [N] with N from 1 to 200"
    if command == "whoami":
        return "this command takes no arguments" if args else None
    if command == "help":
        return None  # /help ignores its arguments
    raise AssertionError(command)


# the audit row keeps the refusal's language-neutral phrase key (the reply is worded)
PROBLEM_KEYS = {
    "command too long": "error.input.too_long",
    "too many arguments": "error.input.too_many",
    "unknown cluster": "error.cluster.unknown",
    "invalid cluster name": "error.input.cluster_name",
    "invalid slot name": "error.slot.invalid_name",
    "several clusters are configured": "error.cluster.name_one",
    "usage: /audit [N] with N from 1 to 200": "error.input.audit_usage maximum=200",
    "this command takes no arguments": "error.input.no_args",
}


def problem_key(problem: str) -> str:
    if problem not in PROBLEM_KEYS:
        return f"error.usage usage={problem.removeprefix('usage: ')}"
    return PROBLEM_KEYS[problem]


# --- the checks --------------------------------------------------------------------------------


def assert_well_formed(chat: FakeChat) -> None:
    """Every reply parses as Telegram HTML, whole and after splitting at 4096."""
    assert chat.replies, "no reply was sent"
    for reply in chat.replies:
        parse_telegram_html(reply.html)
        for chunk in split_message(reply.html):
            assert len(chunk) <= TELEGRAM_LIMIT
            parse_telegram_html(chunk)
        for button in reply.buttons:
            assert len(button.data.encode()) <= 64


def outcome_rows(bot: Bot) -> list[AuditRecord]:
    """The audit rows that are not intents; at most one intent row, right before the last."""
    intents = [i for i, r in enumerate(bot.audit.records) if r.outcome is Outcome.INTENT]
    assert intents in ([], [len(bot.audit.records) - 2]), bot.audit.records
    return [r for r in bot.audit.records if r.outcome is not Outcome.INTENT]


async def dispatch(bot: Bot, text: str) -> FakeChat:
    chat = FakeChat()
    request = Request(ADMIN_ID, "telegram-name", ADMIN_ID, "private", text=text)
    await bot.dispatcher.handle_command(request, chat)  # must not raise
    return chat


def check_command(command: str, args: str, mention: bool, history: Sequence[str] = ()) -> None:
    """Run one generated request on fresh fakes and check every property."""
    bot = make_bot(CONFIG)
    text = command_text(command, args, mention)

    async def scenario() -> FakeChat:
        for old in history:  # earlier (refused) requests, so /audit has rows to show
            await dispatch(bot, f"/whoami {old}")
        bot.pg.calls.clear()
        return await dispatch(bot, text)

    rows_before = len(history)
    chat = asyncio.run(scenario())

    assert len(outcome_rows(bot)) == rows_before + 1
    row = bot.audit.records[-1]
    assert_well_formed(chat)
    problem = expected_problem(command, text)
    if problem is None:
        assert row.outcome is not Outcome.FAILED, row.reason
        assert "internal error" not in row.reason
        if command in {"status", "slots", "check", "createslot", "dropslot"}:
            assert bot.pg.calls, "a valid request ran no query"
        if command in {"status", "slots", "check", "audit", "whoami", "help"}:
            assert row.outcome is Outcome.OK, row.reason
    else:
        assert bot.pg.calls == [], f"invalid input reached the database: {bot.pg.calls}"
        assert row.outcome is Outcome.REFUSED, row.reason
        assert row.reason.startswith(problem_key(problem)), row.reason
        shown = to_plain_text(chat.sent[0].html)
        assert shown.startswith("❌"), shown
        assert problem in shown


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="main", mention=False)
@example(args="main dr", mention=False)
@example(args="<b>&", mention=True)
def test_status_arguments(args: str, mention: bool) -> None:
    check_command("status", args, mention)


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="dr", mention=False)
@example(args="nowhere", mention=False)
def test_slots_arguments(args: str, mention: bool) -> None:
    check_command("slots", args, mention)


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="", mention=False)
@example(args="main", mention=False)
def test_check_arguments(args: str, mention: bool) -> None:
    check_command("check", args, mention)


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="new_slot main", mention=False)
@example(args="old_slot main", mention=False)
@example(args="Pg-2 main", mention=False)
@example(args="new_slot", mention=False)
@example(args="a" * 64 + " main", mention=False)
def test_createslot_arguments(args: str, mention: bool) -> None:
    check_command("createslot", args, mention)


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="old_slot main", mention=False)
@example(args="pg2 main", mention=False)
@example(args="missing dr", mention=False)
@example(args="old_slot", mention=False)
def test_dropslot_arguments(args: str, mention: bool) -> None:
    check_command("dropslot", args, mention)


@PROPERTY
@given(
    args=args_texts,
    mention=st.booleans(),
    history=st.lists(args_texts.map(lambda s: s[: MAX_ARGS_TEXT - 10]), max_size=25),
)
@example(args="", mention=False, history=[])
@example(args="200", mention=False, history=["<b>&amp;</b>"])
@example(args="²", mention=False, history=[])  # isdigit() but not a number int() reads
@example(args="", mention=False, history=["main\n" + "x" * 400] * 20)  # multi-line args
def test_audit_arguments(args: str, mention: bool, history: list[str]) -> None:
    check_command("audit", args, mention, history)


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="", mention=False)
@example(args="me", mention=False)
def test_whoami_arguments(args: str, mention: bool) -> None:
    check_command("whoami", args, mention)


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="", mention=False)
def test_help_arguments(args: str, mention: bool) -> None:
    check_command("help", args, mention)


# --- split_message on rendered text ------------------------------------------------------------

_TAGS = ("b", "i", "code", "u", "s")


_LINE_ALPHABET = "ab01 _-.:/·–✅⚠️<>&\"'\t\u2028é中😀"
_LINE_VALUES = st.one_of(
    st.text(_LINE_ALPHABET, max_size=30),
    st.text(st.characters(exclude_characters="\n", codec="utf-8"), max_size=10),
)


def _render_line(parts: list[tuple[str | None, str]]) -> str:
    """One line as render.py writes them: escaped values, tags opened and closed on the line."""
    return "".join(
        esc(value) if tag is None else f"<{tag}>{esc(value)}</{tag}>" for tag, value in parts
    )


rendered_lines = st.lists(st.tuples(st.sampled_from((None, *_TAGS)), _LINE_VALUES), max_size=4).map(
    _render_line
)


rendered_texts = st.lists(rendered_lines, max_size=40).map("\n".join)


@PROPERTY
@given(text=rendered_texts, limit=st.one_of(st.integers(8, 400), st.just(TELEGRAM_LIMIT)))
def test_split_message_chunks_are_bounded_and_well_formed(text: str, limit: int) -> None:
    chunks = split_message(text, limit=limit)

    assert chunks
    for chunk in chunks:
        assert len(chunk) <= limit
        parse_telegram_html(chunk)
    shown = "".join(parse_telegram_html(c)[0] for c in chunks)
    assert shown.replace("\n", "") == html.unescape(re.sub(r"<[^>]*>", "", text)).replace("\n", "")


@PROPERTY
@given(text=rendered_texts, limit=st.one_of(st.integers(8, 400), st.just(TELEGRAM_LIMIT)))
@example(text="\nfirst line after a blank one", limit=TELEGRAM_LIMIT)
def test_split_message_join_restores_text_when_no_line_exceeds_the_limit(
    text: str, limit: int
) -> None:
    if any(len(line) > limit for line in text.split("\n")):
        limit = max(len(line) for line in text.split("\n"))

    chunks = split_message(text, limit=limit)

    assert all(len(chunk) <= limit for chunk in chunks)
    assert "\n".join(chunks) == text


# --- /rebuild, /alerts, /mute, /unmute -----------------------------------------------------

NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
REBUILD_MODES = {"--dry-run", "--cancel", "--rollback", "--abandon", "--cleanup"}
rebuild_words = st.one_of(
    words,
    st.sampled_from([*sorted(REBUILD_MODES), "--now", "--", "pg1", "pg3", "dr2"]),
)
rebuild_args = st.one_of(args_texts, st.lists(rebuild_words, min_size=1, max_size=4).map(" ".join))


def rebuild_arguments_invalid(text: str) -> bool:
    """True when /rebuild's arguments cannot even be parsed (checked before any lookup)."""
    if len(text) > MAX_ARGS_TEXT:
        return True
    args = text.split()[1:]
    modes = [a for a in args if a.startswith("--")]
    names = [a for a in args if not a.startswith("--")]
    if len(modes) > 1 or any(m not in REBUILD_MODES for m in modes):
        return True
    if not 1 <= len(names) <= 2 or not NODE_RE.fullmatch(names[0]):
        return True
    return len(names) == 2 and not CLUSTER_RE.fullmatch(names[1])


def check_unqueried_command(command: str, args: str, mention: bool, invalid: bool) -> None:
    """General properties, and: invalid arguments never reach PostgreSQL or a shell."""
    bot = make_bot(CONFIG)
    text = command_text(command, args, mention)
    chat = asyncio.run(dispatch(bot, text))

    assert len(outcome_rows(bot)) == 1
    row = bot.audit.records[-1]
    assert_well_formed(chat)
    assert "internal error" not in row.reason, row.reason
    if invalid:
        assert bot.pg.calls == [], f"invalid input reached the database: {bot.pg.calls}"
        assert row.outcome is Outcome.REFUSED, row.reason
        assert to_plain_text(chat.sent[0].html).startswith("❌")


@PROPERTY
@given(args=rebuild_args, mention=st.booleans())
@example(args="pg2 --dry-run", mention=False)
@example(args="pg1", mention=False)
@example(args="pg2 main --cancel --rollback", mention=False)
@example(args="<b> --cleanup", mention=True)
def test_rebuild_arguments(args: str, mention: bool) -> None:
    text = command_text("rebuild", args, mention)
    check_unqueried_command("rebuild", args, mention, rebuild_arguments_invalid(text))


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="", mention=False)
def test_alerts_arguments(args: str, mention: bool) -> None:
    check_unqueried_command("alerts", args, mention, invalid=bool(args.split()))


@PROPERTY
@given(
    args=st.one_of(
        args_texts,
        st.tuples(words, st.sampled_from(["2h", "30min", "1d", "0s", "-1h", "h", "5 parsecs"])).map(
            " ".join
        ),
    ),
    mention=st.booleans(),
)
@example(args="pg2 2h", mention=False)
@example(args="main 1", mention=False)
def test_mute_arguments(args: str, mention: bool) -> None:
    check_unqueried_command("mute", args, mention, invalid=len(args.split()) != 2)


@PROPERTY
@given(args=args_texts, mention=st.booleans())
@example(args="pg2", mention=False)
def test_unmute_arguments(args: str, mention: bool) -> None:
    check_unqueried_command("unmute", args, mention, invalid=len(args.split()) != 1)
