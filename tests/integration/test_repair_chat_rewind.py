"""/repair chooses and runs the rewind path from the chat, end to end (real servers, sshd).

pg2 is promoted and written to while the primary goes on (:func:`diverge`); ``/repair pg2``
reads both timelines, says "rewind" with pg_rewind's own estimate, and after the press the
replica streams again from every side: the primary's walsender on slot pg2 under pg2, its
own receiver, and /status — with the primary's rows and without its diverged ones. A
replica that cannot be rewound (its own WAL since the fork is gone) is offered /rebuild.
"""

from __future__ import annotations

import pytest

from bot.models import RebuildState
from bot.sandbox import PgBinaries
from bot.services.repair.models import PathName
from tests.conftest import ADMIN_ID, VIEWER_ID
from tests.integration._helpers import reply_call
from tests.integration.rebuild_bed import (
    CLUSTER,
    REPLICA,
    chat_for,
    next_message,
    opened,
    press,
    probe,
    text_of,
)
from tests.integration.repair_bed import COMMON_ROWS, PRIMARY_ROWS, diverge, repair_bed, sides
from tests.integration.test_repair import ask_repair

pytestmark = pytest.mark.integration


async def test_repair_rewinds_a_promoted_replica_from_the_chat(pg_binaries: PgBinaries) -> None:
    with repair_bed(pg_binaries) as bed:
        await probe(diverge, bed)
        async with opened(bed.config()) as runtime, chat_for(runtime) as chat:
            api = chat.api
            proposal, confirm, data = await ask_repair(api)
            assert "repair of pg2: rewind" in proposal, proposal
            assert "pg_rewind --dry-run agrees" in proposal, proposal
            assert "pg_rewind --dry-run" in proposal, proposal  # the plan (long: more follows)
            assert "rewind repair of pg2" in text_of(confirm)
            mark = press(api, ADMIN_ID, data, confirm)
            await next_message(api, ADMIN_ID, mark, "✅ repaired main/pg2 (rewind)", timeout=120)
            service = runtime.services.repair
            assert service is not None
            job = await service.wait(CLUSTER, REPLICA)
            assert job is not None and job.state is RebuildState.SUCCEEDED, job
            assert job.kind == "repair.rewind"
            await probe(bed.wait_streaming)
            assert await probe(bed.slot_holder) == f"{REPLICA}|streaming|async"
            assert await probe(bed.receiver_status) == "streaming"
            status = text_of(await reply_call(chat, VIEWER_ID, "/status"))
            assert "main: 1/1 replicas streaming" in status, status
            assert await probe(sides, bed) == {"common": COMMON_ROWS, "primary": PRIMARY_ROWS}
            again = await service.diagnose(REPLICA)
            assert again.nothing_to_do and again.chosen is None


async def test_a_replica_that_cannot_be_rewound_is_offered_the_full_copy(
    newest_pg_binaries: PgBinaries,
) -> None:
    with repair_bed(newest_pg_binaries, replica_wal_keep_size="0") as bed:
        await probe(lambda: diverge(bed, recycle_replica_wal=True))
        async with opened(bed.config()) as runtime:
            service = runtime.services.repair
            assert service is not None
            proposal = await service.diagnose(REPLICA)
            assert proposal.chosen is PathName.FULL, proposal.options
            rewind = next(o for o in proposal.options if o.path is PathName.REWIND)
            assert not rewind.possible
            reasons = dict(
                next(p for p in rewind.preconditions if p.code == "rewind_possible").values
            )
            assert reasons["reason"] in ("wal_missing", "dry_run_failed"), reasons
            assert bed.replica.data_dir.is_dir()  # nothing was touched
