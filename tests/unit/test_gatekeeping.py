"""Who may make the bot act: second approvers, cancel rights, confirmation buttons for every
risky /rebuild mode, the cleanup path binding, the unknown-user rate limit and output caps."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, datetime

from bot.config import AppConfig, parse_config
from bot.errors import RebuildRefused
from bot.models import AuditEntry, ClusterSlots, Outcome, RebuildJob, RebuildState
from bot.phrases import Phrase
from handlers import render
from handlers.base import Reply
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import (
    ADMIN2_ID,
    ADMIN_ID,
    PASSWORD,
    PASSWORD_ENV,
    STRANGER_ID,
    VIEWER_ID,
    Bot,
    NoJobs,
    config_toml,
    make_bot,
    slot,
)


def text_of(reply: Reply) -> str:
    return parse_telegram_html(reply.html)[0]


def data_of(reply: Reply, label_prefix: str) -> str:
    return next(b.data for b in reply.buttons if b.label.startswith(label_prefix))


REBUILDABLE_PG2 = (
    'slot = "pg2"\n'
    'data_dir = "/srv/pg2"\npg_bin_dir = "/usr/lib/postgresql/16/bin"\n'
    'start_command = "pg_ctl start"\nstop_command = "pg_ctl stop"\n\n'
    '[clusters.nodes.ssh]\nhost = "db2"\nuser = "postgres"\n'
    'key_file = "/etc/replbot/id_ed25519"\nknown_hosts = "/etc/replbot/known_hosts"\n\n'
    '[clusters.nodes.replication]\nhost = "db1"\nuser = "repluser"\n'
)


def rebuild_config(second_approver: bool = False) -> AppConfig:
    """The unit config with a rebuildable pg2 (and optionally a second approver)."""
    text = config_toml().replace('slot = "pg2"\n', REBUILDABLE_PG2, 1)
    text += f"\n[rebuild]\nrequire_second_approver = {str(second_approver).lower()}\n"
    return parse_config(tomllib.loads(text), {PASSWORD_ENV: PASSWORD})


def second_approver_config() -> AppConfig:
    return rebuild_config(second_approver=True)


def slot_names(bot: Bot) -> list[str]:
    return [s.name for s in bot.pg.slot_rows["pg1"]]


def job(
    state: RebuildState, old_dir: str = "/srv/pg2-old-20270101T000000", id_: int = 7
) -> RebuildJob:
    return RebuildJob(
        id=id_,
        cluster="main",
        node="pg2",
        state=state,
        step="basebackup",
        requested_by=ADMIN_ID,
        confirmed_by=ADMIN_ID,
        old_dir=old_dir,
        failed_dir=old_dir.replace("-old-", "-failed-"),
        rollback_slot="pg2_rb",
        started_at=1.0,
        updated_at=2.0,
    )


class OneJob(NoJobs):
    """A job store holding one job of main/pg2 (as the lock holder or the latest job)."""

    def __init__(self, current: RebuildJob) -> None:
        self.current = current
        self.updates: list[dict[str, object]] = []

    async def holding_lock(self, cluster: str, node: str) -> RebuildJob | None:
        active = self.current.state in {RebuildState.INTERRUPTED, RebuildState.RUNNING}
        return self.current if (cluster, node) == ("main", "pg2") and active else None

    async def latest(self, cluster: str, node: str) -> RebuildJob | None:
        return self.current if (cluster, node) == ("main", "pg2") else None

    async def update(
        self,
        job_id: int,
        *,
        state: RebuildState | None = None,
        step: str | None = None,
        detail: str | None = None,
    ) -> RebuildJob:
        self.updates.append({"id": job_id, "state": state, "step": step, "detail": detail})
        self.current = replace(
            self.current,
            state=state or self.current.state,
            step=step or self.current.step,
            detail=detail if detail is not None else self.current.detail,
        )
        return self.current


# --- Finding 6: a press by someone who may not act changes nothing -----------------------------


async def test_viewer_press_leaves_an_admins_approval_pending_for_another_admin() -> None:
    bot = make_bot()
    pending = bot.dispatcher.services.confirmations.issue(
        ADMIN_ID, "dropslot", {"slot": "old_slot", "cluster": "main"}, other_user=True
    )

    refused = await bot.press(f"cf:{pending.nonce}", user_id=VIEWER_ID)

    assert "needs the admin role" in text_of(refused.sent[-1])
    assert (bot.audit.records[-1].outcome, bot.audit.records[-1].command) == (
        Outcome.REFUSED,
        "dropslot.confirm",
    )
    assert "old_slot" in slot_names(bot)
    approved = await bot.press(f"cf:{pending.nonce}", user_id=ADMIN2_ID)
    assert "dropped" in text_of(approved.edits[-1][1])
    assert "old_slot" not in slot_names(bot)


async def test_cancel_by_a_viewer_changes_nothing() -> None:
    bot = make_bot()
    pending = bot.dispatcher.services.confirmations.issue(
        ADMIN_ID, "dropslot", {"slot": "old_slot", "cluster": "main"}, other_user=True
    )

    refused = await bot.press(f"cx:{pending.nonce}", user_id=VIEWER_ID)

    assert refused.edits == []
    assert "needs the admin role" in text_of(refused.sent[-1])
    assert bot.audit.records[-1].outcome is Outcome.REFUSED
    approved = await bot.press(f"cf:{pending.nonce}", user_id=ADMIN2_ID)
    assert "dropped" in text_of(approved.edits[-1][1])


async def test_cancel_of_a_requester_bound_button_by_another_admin_changes_nothing() -> None:
    bot = make_bot()
    question = (await bot.command("/dropslot old_slot main")).sent[0]

    refused = await bot.press(data_of(question, "Cancel"), user_id=ADMIN2_ID)

    assert refused.edits == [] and bot.audit.records[-1].outcome is Outcome.REFUSED
    done = await bot.press(data_of(question, "Drop"), user_id=ADMIN_ID)
    assert "dropped" in text_of(done.edits[-1][1])


async def test_dropslot_needs_a_second_admin_when_second_approver_is_on() -> None:
    bot = make_bot(second_approver_config())
    question = (await bot.command("/dropslot old_slot main")).sent[0]
    assert "Another admin must approve" in text_of(question)

    own = await bot.press(data_of(question, "Drop"), user_id=ADMIN_ID)

    assert "a second admin must approve this" in text_of(own.sent[-1])
    assert "old_slot" in slot_names(bot)
    other = await bot.press(data_of(question, "Drop"), user_id=ADMIN2_ID)
    assert "dropped" in text_of(other.edits[-1][1])
    assert "old_slot" not in slot_names(bot)


async def test_cleanup_needs_a_second_admin_when_second_approver_is_on() -> None:
    jobs = OneJob(job(RebuildState.SUCCEEDED))
    bot = make_bot(second_approver_config(), jobs=jobs)
    question = (await bot.command("/rebuild pg2 --cleanup")).sent[0]
    assert "Another admin must approve" in text_of(question)

    own = await bot.press(data_of(question, "Delete"), user_id=ADMIN_ID)

    assert "a second admin must approve this" in text_of(own.sent[-1])
    assert jobs.updates == []


async def test_abandon_runs_only_after_its_confirmation_button() -> None:
    jobs = OneJob(job(RebuildState.INTERRUPTED))
    bot = make_bot(rebuild_config(), jobs=jobs)

    asked = await bot.command("/rebuild pg2 --abandon")

    assert jobs.updates == [] and jobs.current.state is RebuildState.INTERRUPTED
    question = asked.sent[0]
    assert "abandon" in text_of(question).lower()
    refused = await bot.press(data_of(question, "Release"), user_id=ADMIN2_ID)
    assert "only the user who asked" in text_of(refused.sent[-1])
    done = await bot.press(data_of(question, "Release"), user_id=ADMIN_ID)
    assert jobs.current.state is RebuildState.ABANDONED
    assert "lock of pg2 released (job 7 abandoned)" in text_of(done.edits[-1][1])
    again = await bot.press(data_of(question, "Release"), user_id=ADMIN_ID)
    assert "already used" in text_of(again.sent[-1])


async def test_abandon_button_rechecks_the_job_at_press_time() -> None:
    jobs = OneJob(job(RebuildState.INTERRUPTED))
    bot = make_bot(rebuild_config(), jobs=jobs)
    question = (await bot.command("/rebuild pg2 --abandon")).sent[0]
    jobs.current = job(RebuildState.INTERRUPTED, id_=8)  # a different job holds the lock now

    refused = await bot.press(data_of(question, "Release"), user_id=ADMIN_ID)

    assert "changed" in text_of(refused.sent[-1])
    assert jobs.updates == []


async def test_rollback_asks_for_confirmation_and_starts_nothing() -> None:
    jobs = OneJob(job(RebuildState.INTERRUPTED))
    bot = make_bot(second_approver_config(), jobs=jobs)

    asked = await bot.command("/rebuild pg2 --rollback")

    assert jobs.updates == []
    question = asked.sent[-1]
    assert "Another admin must approve" in text_of(question)
    own = await bot.press(data_of(question, "Roll back"), user_id=ADMIN_ID)
    assert "a second admin must approve this" in text_of(own.sent[-1])
    assert jobs.updates == []


# --- Finding 10e: the cleanup button is bound to the path it showed ----------------------------


async def test_cleanup_refuses_when_a_new_rebuild_changed_the_old_directory() -> None:
    jobs = OneJob(job(RebuildState.SUCCEEDED, "/srv/pg2-old-20270101T000000"))
    bot = make_bot(rebuild_config(), jobs=jobs)
    question = (await bot.command("/rebuild pg2 --cleanup")).sent[0]
    assert "/srv/pg2-old-20270101T000000" in text_of(question)
    jobs.current = job(RebuildState.SUCCEEDED, "/srv/pg2-old-20270202T000000", id_=9)

    refused = await bot.press(data_of(question, "Delete"), user_id=ADMIN_ID)

    text = text_of(refused.sent[-1])
    assert "/srv/pg2-old-20270101T000000" in text and "changed" in text, text
    assert bot.audit.records[-1].outcome is Outcome.REFUSED
    assert "snapshot" not in [m for m, _ in bot.pg.calls]


# --- Finding 10f: unknown users are rate limited; long lists are capped ------------------------


async def test_unknown_user_gets_one_refusal_and_one_audit_row_per_minute() -> None:
    bot = make_bot()

    replies = [await bot.command("/status", user_id=STRANGER_ID) for _ in range(3)]
    bot.clock.advance(30)
    replies.append(await bot.command("/status", user_id=STRANGER_ID))

    assert [len(c.sent) for c in replies] == [1, 0, 0, 0]
    assert len(bot.audit.records) == 1
    bot.clock.advance(31)
    later = await bot.command("/status", user_id=STRANGER_ID)
    assert len(later.sent) == 1
    assert len(bot.audit.records) == 2
    assert bot.audit.records[-1].reason == "unknown user (3 more refused since the last row)"
    assert bot.pg.calls == []


async def test_unknown_users_are_limited_each_on_their_own() -> None:
    bot = make_bot()

    first = await bot.command("/status", user_id=STRANGER_ID)
    other = await bot.command("/status", user_id=STRANGER_ID + 1)

    assert len(first.sent) == len(other.sent) == 1
    assert [r.user_id for r in bot.audit.records] == [STRANGER_ID, STRANGER_ID + 1]


def test_slots_reply_of_a_primary_with_500_slots_fits_in_two_messages() -> None:
    many = tuple(slot(f"s{i:03d}", i % 2 == 0, 100 + i) for i in range(500))

    text = render.slots([ClusterSlots("main", "pg1", many)])

    parts = render.split_message(text)
    assert len(parts) <= 2, len(parts)
    assert "… and 450 more slots" in text
    assert "s049" in text and "s050" not in text


def test_audit_reply_is_capped_and_each_row_stays_on_one_line() -> None:
    at = datetime(2027, 1, 1, tzinfo=UTC)
    hostile = "a\n<code>\n" * 30
    entries = [
        AuditEntry(i, at, 1, "eve\nx", 1, hostile[:40], hostile, Outcome.REFUSED, hostile, 1)
        for i in range(200, 0, -1)
    ]

    text = render.audit(entries)

    lines = text.split("\n")
    assert lines[-1] == "… and 100 more entries (ask for fewer with /audit N)"
    assert len(lines) == 1 + 100 + 1
    for part in render.split_message(text):
        parse_telegram_html(part)


def test_split_message_closes_and_reopens_tags_open_across_a_split() -> None:
    text = "<b>head</b>\n<code>" + "\n".join(f"line {i}" for i in range(400)) + "</code> tail"

    parts = render.split_message(text, limit=500)

    assert len(parts) > 3
    plain = []
    for part in parts:
        assert len(part) <= 500
        shown, entities = parse_telegram_html(part)
        plain.append(shown)
        assert any(e["type"] == "code" for e in entities)
    assert "\n".join(plain) == parse_telegram_html(text)[0]


async def test_a_refused_rollback_is_never_shown_as_started() -> None:
    """The question is edited to "rollback started" only after the service accepted it."""
    jobs = OneJob(job(RebuildState.INTERRUPTED))
    bot = make_bot(rebuild_config(), jobs=jobs)
    question = (await bot.command("/rebuild pg2 --rollback")).sent[0]

    async def refuse(*_: object) -> object:
        raise RebuildRefused(Phrase.of("error.rebuild.nothing_to_roll_back", node="pg2"))

    bot.dispatcher.services.rebuild.rollback = refuse  # type: ignore[method-assign]
    pressed = await bot.press(data_of(question, "Roll back"), user_id=ADMIN_ID)

    shown = [text_of(r) for _, r in pressed.edits] + [text_of(r) for r in pressed.sent]
    assert not any("rolling back" in t for t in shown), shown
    assert "no interrupted rebuild of pg2 to roll back" in text_of(pressed.sent[-1])
    assert bot.audit.records[-1].outcome is Outcome.REFUSED
