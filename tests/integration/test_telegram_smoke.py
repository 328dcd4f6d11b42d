"""A first end-to-end check: /status through PTB and the fake Bot API on a real cluster."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_ID, TelegramHarness

pytestmark = pytest.mark.integration


async def test_status_reaches_the_chat_with_the_streaming_replica(
    telegram: TelegramHarness,
) -> None:
    text = await telegram.reply_to(ADMIN_ID, "/status")
    assert "1/1 replicas streaming" in text
    assert "<b>pg2</b> replica · streaming" in text
