"""Plans and their runs in Russian: a rebuild's dry run, its progress and endings, a repair
proposal of every path, the /attachslot and /detachslot confirmations — built by the real
plan-building functions and services on fakes — show no English sentence, are valid Telegram
HTML within one message, and a plan's digest is the same whichever language shows it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bot.models import PreflightReport, RebuildProgress, RebuildState
from bot.phrases import Phrase
from bot.services.plans.model import Plan, plan_digest
from bot.services.rebuild.plan import build_plan
from bot.services.rebuild.verify import judge_streaming
from bot.services.repair.choose import RewindVerdict, choose
from bot.services.repair.models import (
    Diagnosis,
    PathName,
    RepairProgress,
    RepairProposal,
    SettingCheck,
    StartRefusal,
)
from bot.services.repair.parameters import build_parameters
from bot.services.repair.resume import build_resume
from bot.services.repair.rewind import build_rewind_plan, parse_target_probe
from bot.services.repair.timeline import Divergence
from bot.services.slotless import SlotlessService, SlotPlan
from bot.services.slotview import SlotOverrides
from handlers import render
from handlers.i18n import language
from handlers.render.common import esc
from handlers.render.plans import said
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import ADMIN_ID, FakeClock, rebuild_config, slot, walsender
from tests.unit.test_i18n import assert_telegram_html
from tests.unit.test_i18n_tour import TECHNICAL, english_runs
from tests.unit.test_rebuild_identity import receiver
from tests.unit.test_rebuild_runner import Bed, fail_new_start
from tests.unit.test_repair_choice import stopped_replica
from tests.unit.test_repair_rewind import cluster_of, facts_of, probe_output, replica
from tests.unit.test_slotless_runner import CLUSTER, PlanPostgres

TAG = "20261202T000000_aa"
GIB = 1024**3
# Names PostgreSQL gives its files, settings and programs (they stay as it prints them).
PG_WORDS = {
    "pg_rewind",
    "pg_ctl",
    "pg_control",
    "standby.signal",
    "primary_slot_name",
    "primary_conninfo",
    "application_name",
    "postgresql.auto.conf",
    "walsender",
    "max_worker_processes",
    "status",
    "dry-run",
}


# pg_controldata's "Database cluster state", shown as it prints it
CLUSTER_STATE = "shut down in recovery"


def leaks(text: str) -> list[str]:
    """English runs of ``text``, PostgreSQL's own words aside."""
    runs = english_runs(text.replace(CLUSTER_STATE, " "))
    return [r for r in runs if len([w for w in r.split() if w.lower() not in PG_WORDS]) >= 3]


def russian(make: object) -> str:
    """``make()`` rendered in Russian; the messages the chat sends of it (a reply longer than
    one message is split) are each valid Telegram HTML within the limit."""
    assert callable(make)
    with language("ru"):
        text = make()
    assert isinstance(text, str)
    for part in render.split_message(text):
        assert_telegram_html(part)
        parse_telegram_html(part)
    return text


def assert_russian(texts: list[str]) -> None:
    found = {text: leaks(text) for text in texts if leaks(text)}
    assert not found, found
    assert all(TECHNICAL)  # the shared technical words are what the tour allows too


# --- rebuild -----------------------------------------------------------------------------


def rebuild_plan_of_pg2(slot_missing: bool = True):  # type: ignore[no-untyped-def]
    config = rebuild_config()
    cluster = config.clusters[0]
    node = cluster.node("pg2")
    return build_plan(cluster, node, TAG, slot_missing, 3, "pg2", "", 30.0)


def test_a_rebuild_dry_run_in_russian_has_no_english_sentence() -> None:
    plan = rebuild_plan_of_pg2()
    report = PreflightReport(cluster="main", node="pg2", items=())
    text = russian(lambda: render.rebuild_dry_run(report, plan))
    assert_russian([text])
    assert "создать слот pg2 на pg1" in text
    assert "pg_basebackup с pg1" in text
    with language("en"):
        assert "create slot pg2 on pg1" in render.rebuild_plan(plan)


async def rebuild_progress(fail: bool) -> list[RebuildProgress]:
    """Every progress a rebuild of main/pg2 on fakes reports (real service, real plan)."""
    bed = Bed()
    if fail:
        fail_new_start(bed)
    seen: list[RebuildProgress] = []

    async def sink(progress: RebuildProgress) -> None:
        seen.append(progress)

    await bed.service.start(bed.plan, ADMIN_ID, ADMIN_ID, sink)
    await asyncio.wait_for(bed.service.wait("main", "pg2"), 5)
    return seen


@pytest.mark.parametrize("fail", [False, True], ids=["succeeded", "rolled-back"])
async def test_a_rebuild_progress_and_its_ending_in_russian(fail: bool) -> None:
    seen = await rebuild_progress(fail)
    end = seen[-1]
    assert end.state is (RebuildState.ROLLED_BACK if fail else RebuildState.SUCCEEDED)
    running = [p for p in seen if p.state is RebuildState.RUNNING]
    assert any(p.title is not None and p.title.key == "step.basebackup" for p in running)
    texts = [russian(lambda p=p: render.rebuild_progress(p)) for p in seen]
    assert_russian(texts)
    assert any("шаг 6/9: pg_basebackup с pg1" in t for t in texts), texts
    if fail:
        assert "старый каталог данных восстановлен" in texts[-1], texts[-1]
        assert "старая pg2 снова получает поток" in texts[-1], texts[-1]
        assert any("откатываю: start: pg2 не запустилась" in t for t in texts), texts
    else:
        assert "pg2 снова получает поток; старые данные сохранены в" in texts[-1]
    with language("en"):
        english = render.rebuild_progress(end)
    assert ("the old pg2 streams again" if fail else "pg2 streams again") in english


# --- repair ------------------------------------------------------------------------------


def proposal(diag: Diagnosis, plan: Plan | None, rewind: RewindVerdict | None = None):  # type: ignore[no-untyped-def]
    options, path = choose(diag, 10 * GIB, rewind=rewind)
    digest = plan_digest(plan) if plan is not None else ""
    return RepairProposal(diag, options, path, plan, digest, tag=TAG)


def repair_cases() -> dict[str, tuple[RepairProposal, Plan | None]]:
    config = rebuild_config()
    cluster = config.clusters[0]
    node = cluster.node("pg2")
    resume_diag = stopped_replica(standby_signal=False)
    resume = build_resume(resume_diag, cluster, node, config.rebuild, TAG)
    low = stopped_replica(
        settings=(SettingCheck("max_worker_processes", 4, 6),),
        refusals=(StartRefusal("max_worker_processes", 4, 6),),
    )
    parameters = build_parameters(low, cluster, node, config.rebuild, TAG)
    diverged = stopped_replica(timeline=2, divergence=Divergence("0/5000028", 1, "diverged"))
    target = replica()
    facts = facts_of(parse_target_probe(probe_output()))
    rewind = build_rewind_plan(cluster_of(target), target, facts, TAG, "pg2", True)
    gone = stopped_replica(wal_available=False, wal_note="segment_removed", slot_exists=False)
    return {
        "resume": (proposal(resume_diag, resume), resume),
        "parameters": (proposal(low, parameters), parameters),
        "rewind": (proposal(diverged, rewind, RewindVerdict(True, bytes_moved=GIB)), rewind),
        "full": (proposal(gone, None), None),
    }


@pytest.mark.parametrize("path", ["resume", "parameters", "rewind", "full"])
def test_a_repair_proposal_of_each_path_in_russian(path: str) -> None:
    shown, plan = repair_cases()[path]
    assert shown.chosen is PathName(path)
    texts = [russian(lambda: render.repair_proposal(shown, dry_run=True))]
    if plan is None:
        rebuild = rebuild_plan_of_pg2(slot_missing=True)
        texts.append(russian(lambda: render.repair_full_needed("pg2")))
        texts.append(russian(lambda: render.rebuild_plan(rebuild)))
    else:
        texts.append(russian(lambda: render.repair_confirm(plan, 300, False)))
        first, last = plan.steps[0], plan.steps[-1]
        running = RepairProgress(
            1, "main", "pg2", plan.kind, first.key, 0, len(plan.steps), "running", title=first.title
        )
        done = RepairProgress(
            1,
            "main",
            "pg2",
            plan.kind,
            last.key,
            len(plan.steps),
            len(plan.steps),
            RebuildState.SUCCEEDED.value,
            said=(Phrase.of("progress.repaired", node="pg2"),),
            keeps=plan.keeps,
        )
        failed = replace(
            done,
            state=RebuildState.ROLLED_BACK.value,
            said=(Phrase.of("progress.repair_cancelled"),),
            keeps=(),
        )
        texts += [russian(lambda p=p: render.repair_progress(p)) for p in (running, done, failed)]
    assert_russian(texts)


def test_a_plan_has_the_same_digest_whichever_language_shows_it() -> None:
    """The digest hashes each title's key and values: a Russian and an English admin approve
    the same plan, while the words they see differ."""
    for path, (_, plan) in repair_cases().items():
        if plan is None:
            continue
        digests, texts = set(), set()
        for lang in ("ru", "en"):
            with language(lang):
                digests.add(plan_digest(plan))
                texts.add(render.repair_plan(plan))
        assert len(digests) == 1, path
        assert len(texts) == 2, path
        first = plan.steps[0]
        retitled = replace(first, title=replace(first.title, values=(("node", "pg9"),)))
        assert plan_digest(replace(plan, steps=(retitled, *plan.steps[1:]))) != digests.pop()


# --- /attachslot and /detachslot ---------------------------------------------------------


async def slot_plans() -> tuple[SlotPlan, SlotPlan]:
    clock = FakeClock()
    slotless = PlanPostgres(
        walsenders={"pg1": [walsender(201, "pg2", None)]}, slot_rows={"pg1": []}
    )
    attach = await SlotlessService((CLUSTER,), slotless, SlotOverrides(), clock, 5).attach_plan(
        "pg2", None, None
    )
    attached = PlanPostgres(
        walsenders={"pg1": [walsender(201, "pg2", "pg2")]},
        slot_rows={"pg1": [slot("pg2", True, 201)]},
    )
    detach = await SlotlessService((CLUSTER,), attached, SlotOverrides(), clock, 5).detach_plan(
        "pg2", None
    )
    return attach, detach


async def test_attachslot_and_detachslot_confirmations_in_russian() -> None:
    attach, detach = await slot_plans()
    texts = [
        russian(lambda: render.attachslot_confirm(attach, 300, False)),
        russian(lambda: render.attachslot_dry_run(attach)),
        russian(lambda: render.detachslot_confirm(detach, 300, True)),
    ]
    assert_russian(texts)
    assert "walsender основного сервера для pg2 держит слот pg2" in texts[0], texts[0]
    assert "pg2 снова получает поток, без слота" in texts[2], texts[2]
    for planned in (attach, detach):
        with language("ru"):
            russian_digest = plan_digest(planned.plan)
        with language("en"):
            assert plan_digest(planned.plan) == russian_digest == planned.digest


# --- what a streaming check saw --------------------------------------------------------


def test_what_a_streaming_check_saw_reads_in_russian() -> None:
    """judge_streaming's findings end a failed verify and show in the repair diagnosis."""
    verdicts = [
        judge_streaming(receiver("waiting", in_recovery=False), None, [], "pg2"),
        judge_streaming(receiver(), slot("pg2", True, 201), [], "pg2"),
        judge_streaming(
            receiver(), slot("pg2", True, 201), [walsender(201, "pg_basebackup", "pg2")], "pg2"
        ),
        judge_streaming(None, slot("pg2", False), [], "pg2"),
    ]
    texts = []
    for verdict in verdicts:
        assert not verdict.ok
        with language("ru"):
            texts.append(esc(said(verdict.seen)))
    assert_russian(texts)
    assert "приёмник waiting; НЕ в режиме восстановления; слота нет" in texts[0], texts[0]
    assert "реплика не отвечает; слот pg2 неактивен" in texts[3], texts[3]


def test_the_diagnosis_of_a_running_replica_reads_in_russian() -> None:
    """Up and in recovery but not streaming, its privileges not read: what was seen, the
    standby state and the unread privileges are worded, not passed through."""
    seen = judge_streaming(receiver("waiting"), slot("pg2", False), [], "pg2").seen
    diag = stopped_replica(
        replica_up=True,
        server_running=True,
        in_recovery=True,
        streaming_seen=seen,
        settings=(SettingCheck("max_worker_processes", 4, 6),),
        alter_system_missing=None,
    )
    shown = proposal(diag, None)
    text = russian(lambda: render.repair_proposal(shown, dry_run=False))
    assert_russian([text])
    assert "приёмник waiting; слот pg2 неактивен" in text, text
    assert "не хватает: не прочитано" in text, text
    assert "(в режиме восстановления)" in text, text


async def test_an_unfinished_rebuild_found_at_start_up_reads_in_russian() -> None:
    bed = Bed()
    job = await bed.jobs.create(
        "main", "pg2", ADMIN_ID, ADMIN_ID, bed.plan.old_dir, bed.plan.failed_dir, "pg2_rb"
    )
    await bed.jobs.update(job.id, step="basebackup")
    [(found, inspection)] = await bed.service.recover()
    assert found.id == job.id and found.state is RebuildState.INTERRUPTED
    text = russian(lambda: render.rebuild_interrupted(found, inspection))
    assert_russian([text])
    assert "прервано на шаге basebackup; pg_basebackup не запущен; сервер запущен" in text, text
    assert str(inspection).startswith("progress.inspect.step step=basebackup; ")
