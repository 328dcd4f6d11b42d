"""Two confirmations of a rebuild of the same node, prepared in the same second (finding 3).

Directory names once carried only a one-second timestamp: the second job's ``move_aside``
found the first job's old directory, and its rollback treated that foreign directory as its
own — it stopped the good new replica, renamed it ``…failed…`` and put the broken old data
back. The second confirmation must be refused instead, and nothing the refused job did not
create may be renamed.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from bot.models import RebuildState
from bot.sandbox import PgBinaries
from tests.conftest import ADMIN_ID
from tests.integration.rebuild_bed import (
    CLUSTER,
    REPLICA,
    SECOND_ADMIN_ID,
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


class SameSecondClock:
    """Real time, except that while frozen the wall clock stays inside one second."""

    def __init__(self) -> None:
        self.frozen: float | None = None

    def freeze(self) -> None:
        self.frozen = math.floor(time.time()) + 0.5

    def thaw(self) -> None:
        self.frozen = None

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() if self.frozen is None else self.frozen

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_second_confirmation_of_the_same_second_is_refused_and_renames_nothing(
    newest_pg_binaries: PgBinaries,
) -> None:
    with rebuild_bed(newest_pg_binaries) as bed:
        old_marker = bed.put_marker()
        clock = SameSecondClock()
        async with opened(bed.config(), clock) as runtime, chat_for(runtime) as chat:
            api, service = chat.api, runtime.services.rebuild
            clock.freeze()
            first_message, first = await ask_and_confirm(api, ADMIN_ID)
            second_message, second = await ask_and_confirm(api, SECOND_ADMIN_ID)
            clock.thaw()

            mark = press(api, ADMIN_ID, first, first_message)
            await next_message(api, ADMIN_ID, mark, "⏳ rebuilding main/pg2")
            job = await service.wait(CLUSTER, REPLICA)
            assert job is not None and job.state is RebuildState.SUCCEEDED, job
            await probe(bed.wait_streaming, 30)
            new_inode = bed.replica.data_dir.stat().st_ino
            assert bed.marker() is None, "pg2 should run on the new copy"
            old_dirs = bed.moved_dirs("old")
            assert [str(d) for d in old_dirs] == [job.old_dir]

            mark = press(api, SECOND_ADMIN_ID, second, second_message)
            answer = await next_message(api, SECOND_ADMIN_ID, mark, "❌")
            await service.wait(CLUSTER, REPLICA)
            latest = await service.latest_job(CLUSTER, REPLICA)

        assert "refused" in text_of(answer), text_of(answer)
        assert latest is not None and latest.id == job.id, f"a second job ran: {latest}"
        # The first job's new replica is pg2's data directory, intact and streaming.
        assert bed.replica.data_dir.stat().st_ino == new_inode
        assert bed.marker() is None, "the old data was put back over the new replica"
        assert bed.moved_dirs("old") == old_dirs
        assert bed.marker(old_dirs[0]) == old_marker
        assert bed.moved_dirs("failed") == [], "the new replica was renamed …failed…"
        await probe(bed.wait_streaming, 30)
        assert await probe(bed.slot_names) == [REPLICA]
