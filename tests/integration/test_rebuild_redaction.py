"""Output tails that reach the chat are redacted (finding 10d).

The new replica's start fails and the server log holds the bot's database password and a
``password=…`` fragment; the failure (and its log tail) is shown in the chat, the secrets are
not.
"""

from __future__ import annotations

import secrets
import shlex

import pytest

from bot.models import RebuildState
from bot.sandbox import PgBinaries
from tests.conftest import ADMIN_ID, LEDGER
from tests.integration.rebuild_bed import (
    CLUSTER,
    MARKER,
    REPLICA,
    ask_and_confirm,
    chat_for,
    next_message,
    opened,
    press,
    probe,
    rebuild_bed,
    text_of,
)

pytestmark = pytest.mark.integration


async def test_server_log_tail_of_a_failed_start_is_redacted_in_the_chat(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        bed.put_marker()
        fragment = secrets.token_urlsafe(12)
        LEDGER.secrets.add(fragment)
        password = bed.pgset.bot_password
        leak = bed.own_file(
            bed.base / "leak.txt",
            f"FATAL:  replbot-leak-test conninfo password={fragment}\n"
            f"FATAL:  replbot-leak-test {password}\n",
        )
        node = bed.replica
        real_start = shlex.join(bed.pgset.pg_ctl_start_command(REPLICA))
        # The old data (it has the marker) starts; the new copy "fails" and logs secrets.
        start = (
            f"if [ -e {shlex.quote(str(node.data_dir / MARKER))} ]; then {real_start}; "
            f"else cat {shlex.quote(str(leak))} >> {shlex.quote(str(node.log_file))}; "
            "exit 1; fi"
        )
        async with opened(bed.config(start_command=start)) as runtime, chat_for(runtime) as chat:
            api = chat.api
            message, data = await ask_and_confirm(api, ADMIN_ID)
            mark = press(api, ADMIN_ID, data, message)
            await next_message(api, ADMIN_ID, mark, "rebuild failed, rolled back")
            job = await runtime.services.rebuild.wait(CLUSTER, REPLICA)
            shown = [text_of(c) for c in api.calls if c.ok and isinstance(c.result, dict)]

        assert job is not None and job.state is RebuildState.ROLLED_BACK, job
        chat_text = "\n".join(shown)
        assert "replbot-leak-test conninfo password=***" in chat_text, chat_text[-2000:]
        assert fragment not in chat_text
        assert password not in chat_text
        assert fragment not in job.detail and password not in job.detail
        await probe(bed.wait_streaming, 30)
