"""--cleanup knows it already ran from the job's own record (a stable key), not from English
words that a path or a name could contain as well."""

from __future__ import annotations

import pytest

from bot.errors import RebuildRefused
from bot.models import RebuildJob, RebuildState
from tests.unit.fakes import ADMIN_ID
from tests.unit.test_rebuild_runner import Bed


async def succeeded_job(bed: Bed, detail: str) -> RebuildJob:
    job = await bed.jobs.create(
        "main", "pg2", ADMIN_ID, ADMIN_ID, bed.plan.old_dir, bed.plan.failed_dir, "pg2_rb"
    )
    return await bed.jobs.update(job.id, state=RebuildState.SUCCEEDED, detail=detail)


async def test_a_second_cleanup_is_refused_after_the_first_removed_the_old_directory() -> None:
    bed = Bed()
    job = await bed.run()
    assert job.state is RebuildState.SUCCEEDED, job
    assert (await bed.service.cleanup_target("pg2", "main")).id == job.id
    removed = await bed.service.cleanup("pg2", "main", ADMIN_ID, bed.plan.old_dir)
    assert removed == bed.plan.old_dir and bed.plan.old_dir not in bed.host.dirs
    with pytest.raises(RebuildRefused, match=r"error\.rebuild\.old_dir_removed"):
        await bed.service.cleanup_target("pg2", "main")


async def test_words_in_a_value_of_the_detail_are_not_taken_for_a_cleanup() -> None:
    """The old check looked for "old directory removed" anywhere in the detail text."""
    bed = Bed()
    detail = "progress.rebuilt node=pg2 path=/srv/old directory removed by 7/pg2-old"
    job = await succeeded_job(bed, detail)
    assert (await bed.service.cleanup_target("pg2", "main")).id == job.id


async def test_the_cleanup_record_is_a_stable_key_whatever_follows_it() -> None:
    bed = Bed()
    await succeeded_job(bed, "progress.rebuilt node=pg2 path=/x; progress.old_removed by=7")
    with pytest.raises(RebuildRefused, match=r"error\.rebuild\.old_dir_removed"):
        await bed.service.cleanup_target("pg2", "main")


async def test_a_job_row_from_before_phrases_that_says_the_old_directory_was_removed() -> None:
    bed = Bed()
    await succeeded_job(bed, "rebuilt from pg1; old directory removed by 7")
    with pytest.raises(RebuildRefused, match=r"error\.rebuild\.old_dir_removed"):
        await bed.service.cleanup_target("pg2", "main")
