"""Every Phrase a service can return has words, with exactly the values the service gives."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import handlers.render  # noqa: F401  (registers every feature's table)
from bot.phrases import Phrase
from handlers.i18n import language
from handlers.render.phrases import TEXTS, say

ROOT = Path(__file__).resolve().parents[2]


def phrase_calls() -> list[tuple[str, str, frozenset[str]]]:
    """(where, key, value names) of every ``Phrase.of("key", ...)`` in bot/ and handlers/."""
    found = []
    for path in sorted([*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "of"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "Phrase"
            ):
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{path}:{node.lineno}: the phrase key must be a literal"
                )
                assert not any(k.arg is None for k in node.keywords), (
                    f"{path}:{node.lineno}: name the phrase's values (no **kwargs)"
                )
                names = frozenset(k.arg for k in node.keywords if k.arg)
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", first.value, names))
    return found


def placeholders(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def test_every_phrase_key_has_a_text_with_the_values_it_is_given() -> None:
    problems = []
    for where, key, names in phrase_calls():
        template = TEXTS.get(key)
        if template is None:
            problems.append(f"{where}: no text for {key!r}")
        elif not placeholders(template) <= names:
            missing = sorted(placeholders(template) - names)
            problems.append(f"{where}: {key!r} needs {missing}")
    assert not problems, "\n".join(problems)


def test_a_phrase_is_worded_in_the_reply_language_with_sizes_and_durations() -> None:
    from handlers.render.phrases import register

    register({"test.sample": "{node}: {free_bytes} free after {wait_s}"})
    try:
        phrase = Phrase.of("test.sample", node="pg2", free_bytes=1536, wait_s=150)
        with language("en"):
            assert say(phrase) == "pg2: 1.5 kB free after 2 min 30 s"
        assert str(phrase) == "test.sample free_bytes=1536 node=pg2 wait_s=150"
    finally:
        TEXTS.pop("test.sample")


def test_a_str_field_holding_one_of_our_phrases_is_worded_and_server_text_is_kept() -> None:
    """A node's reason kept as text (``NodeUnavailable.reason``, a snapshot's error, an alert
    figure) is worded when it is the neutral form of our own phrase, in either language."""
    from handlers.render.phrases import reason_text

    neutral = str(Phrase.of("error.pg.no_answer", timeout_s=5.0))
    with language("en"):
        english = reason_text(neutral)
    with language("ru"):
        russian = reason_text(neutral)
    assert "error.pg" not in english and "error.pg" not in russian and english != russian
    server = 'connection to server at "127.0.0.1", port 5 failed: Connection refused'
    assert reason_text(server) == server
    assert reason_text("pg_hba.conf rejects connection") == "pg_hba.conf rejects connection"
    nested = Phrase.of("preflight.ssh.failed", reason=Phrase.of("error.pg.no_answer", timeout_s=1))
    with language("en"):
        assert "error." not in say(nested) and "preflight." not in say(nested)


def test_redaction_reaches_nested_phrases() -> None:
    secret = "hunter2-secret"
    inner = Phrase.of("error.step_failed", step="start", reason=f"password={secret}")
    outer = Phrase.of("progress.step_error", step="start", error=inner)
    redacted = outer.map_text(lambda text: text.replace(secret, "***"))
    assert secret not in str(redacted)
    with language("en"):
        assert secret not in say(redacted)
