"""Redaction: known secrets and password-looking text never leave the process unmasked."""

from __future__ import annotations

import logging

import pytest

from bot.logsetup import install_redaction
from bot.redact import MASK, Redactor

SECRET = "Rdx-known-secret-4711"


def test_redactor_masks_every_occurrence_of_a_known_secret() -> None:
    redact = Redactor([SECRET])

    assert redact(f"a {SECRET} b {SECRET}") == f"a {MASK} b {MASK}"


def test_redactor_masks_a_secret_added_later() -> None:
    redact = Redactor()
    redact.add("late-secret-value")

    assert redact("x late-secret-value y") == f"x {MASK} y"


def test_redactor_masks_the_longest_overlapping_secret_whole() -> None:
    redact = Redactor(["abcd", "abcdefgh"])

    assert redact("abcdefgh") == MASK


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=db1 password=hunter2 user=bot", f"host=db1 password={MASK} user=bot"),
        ("host=db1 PASSWORD = hunter2", f"host=db1 PASSWORD = {MASK}"),
        ("password='hunter 2 \\' x' host=db1", f"password={MASK} host=db1"),
        (
            "postgresql://bot:hunter2@db1:5432/postgres",
            f"postgresql://bot:{MASK}@db1:5432/postgres",
        ),
        (
            "postgresql://bot@db1/postgres?password=hunter2",
            f"postgresql://bot@db1/postgres?password={MASK}",
        ),
    ],
)
def test_redactor_masks_password_fragments(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


def test_redactor_masks_a_bot_token_in_an_api_url() -> None:
    url = "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getUpdates"

    assert Redactor()(url) == f"https://api.telegram.org/bot{MASK}/getUpdates"


def test_redactor_leaves_harmless_text_alone() -> None:
    text = "slot pg2 created on main/pg1 (0/3000148)"

    assert Redactor([SECRET])(text) == text


def test_install_redaction_masks_secrets_in_log_args(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction(Redactor([SECRET]))
    logger = logging.getLogger("replbot.unit.redact")

    with caplog.at_level(logging.INFO, logger="replbot.unit.redact"):
        logger.info("connecting with %s to %s", SECRET, "postgresql://bot:hunter2@db1/x")

    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert SECRET not in message
    assert "hunter2" not in message
    assert f"connecting with {MASK} to postgresql://bot:{MASK}@db1/x" == message
    assert SECRET not in caplog.text


def test_install_redaction_masks_secrets_in_exception_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_redaction(Redactor([SECRET]))
    logger = logging.getLogger("replbot.unit.redact")

    with caplog.at_level(logging.ERROR, logger="replbot.unit.redact"):
        try:
            raise RuntimeError(f"auth failed: token {SECRET}, dsn password=hunter2")
        except RuntimeError:
            logger.exception("query failed")

    assert SECRET not in caplog.text
    assert "hunter2" not in caplog.text
    assert "RuntimeError: auth failed: token ***" in caplog.text
    assert f"password={MASK}" in caplog.text
