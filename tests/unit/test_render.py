"""Rendering: hostile values are escaped, output is valid Telegram HTML, splitting is safe."""

from __future__ import annotations

import dataclasses
import html
from datetime import UTC, datetime

import pytest

from bot.errors import NodeUnavailable
from bot.models import (
    AuditEntry,
    CheckItem,
    CheckLevel,
    ClusterCheck,
    ClusterSlots,
    ClusterStatus,
    NodeSnapshot,
    Outcome,
    ReplicaView,
    SlotInfo,
    User,
)
from bot.models import Role as UserRole
from bot.phrases import Phrase
from bot.services.replication import ReplicationService
from handlers import render
from handlers.base import Purpose
from handlers.render import TELEGRAM_LIMIT, human_bytes, human_seconds, split_message
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import FakePostgres, make_config, slot, walsender

HOSTILE = "<b>&x</b>"


def plain(text: str) -> str:
    """The text Telegram would show; raises HtmlParseError if Telegram would refuse it."""
    return parse_telegram_html(text)[0]


def primary(walsenders: tuple[object, ...] = ()) -> NodeSnapshot:
    return NodeSnapshot(
        cluster="main",
        node="pg1",
        at=0.0,
        in_recovery=False,
        server_version="16.4",
        server_version_num=160004,
        timeline=1,
        lsn="0/3000148",
        walsenders=walsenders,  # type: ignore[arg-type]
    )


def test_unconfigured_walsender_name_is_escaped() -> None:
    sender = walsender(777, HOSTILE, None, client_addr="10.9.9.9")
    status = ClusterStatus("main", "pg1", primary((sender,)), None, (), unknown_senders=(sender,))

    text = render.status([status])

    assert HOSTILE not in text
    assert html.escape(HOSTILE) in text
    assert f"unconfigured standby {HOSTILE} from 10.9.9.9" in plain(text)


def test_down_reason_with_markup_characters_is_escaped() -> None:
    reason = 'connection to server at "db2" failed: <timeout> & retry'
    view = ReplicaView("pg2", "pg2", "down", None, None, down_reason=reason)
    status = ClusterStatus("main", "pg1", primary(), None, (view,))

    text = render.status([status])

    shown = plain(text)
    assert "pg2 replica · down · slot pg2" in shown
    assert f"reason: {reason}" in shown


def test_primary_down_reason_is_escaped() -> None:
    status = ClusterStatus("main", "pg1", None, "FATAL: <no> & such", ())

    shown = plain(render.status([status]))

    assert "main: primary pg1 is down" in shown
    assert "reason: FATAL: <no> & such" in shown


def test_hostile_cluster_node_and_slot_values_are_escaped_everywhere() -> None:
    slots_text = render.slots(
        [
            ClusterSlots(
                HOSTILE,
                HOSTILE,
                (
                    SlotInfo(
                        name=HOSTILE,
                        slot_type="physical",
                        active=False,
                        active_pid=None,
                        restart_lsn=None,
                        retained_bytes=None,
                        wal_status="lost",
                        safe_wal_size=None,
                        inactive_since=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                        invalidation_reason="<wal_removed>",
                        used_by=HOSTILE,
                    ),
                ),
            )
        ]
    )
    check_text = render.check(
        [
            ClusterCheck(
                HOSTILE,
                (
                    CheckItem(
                        HOSTILE,
                        "x&y",
                        CheckLevel.FAIL,
                        Phrase.of("check.reason", reason="<a>"),
                        Phrase.of("check.replica_on.fix", setting="<it>", node=HOSTILE),
                        notes=(Phrase.of("check.hba.rule", line=1, rule="<b>&"),),
                    ),
                ),
            )
        ]
    )
    entry = AuditEntry(
        1,
        datetime(2024, 1, 2, tzinfo=UTC),
        None,
        HOSTILE,
        None,
        "status",
        "<i>",
        Outcome.REFUSED,
        "r&d",
        3,
    )
    texts = [
        slots_text,
        render.slots([ClusterSlots("main", "pg1", (), error="<down>")]),
        check_text,
        render.audit([entry]),
        render.help_text(
            User(1, HOSTILE, UserRole.ADMIN),
            [render.HelpEntry("/x <y>", "a & b", UserRole.ADMIN, "/x <z>", Purpose.YOU, "<n>")],
        ),
        render.whoami(User(1, HOSTILE, None), -5),
        render.refusal("<refused> & co"),
        render.failure("<failed> & co"),
        render.internal_error("<ref>"),
        render.cancelled("<x>"),
        render.confirm_drop_slot(slot(HOSTILE, False), HOSTILE, HOSTILE, 30),
        render.slot_created(HOSTILE, HOSTILE, HOSTILE),
        render.slot_dropped(HOSTILE, HOSTILE, HOSTILE),
    ]

    for text in texts:
        assert HOSTILE not in text
        plain(text)  # well-formed
    assert f"{HOSTILE} physical · INACTIVE" in plain(slots_text)
    assert "invalidated: <wal_removed>" in plain(slots_text)
    assert "<a>; line 1: <b>& → set <it> = on on" in plain(check_text)


def test_audit_rendering_keeps_multi_line_arguments_valid_after_splitting() -> None:
    # A Telegram message may span lines: "/status main\n..." is audited with its newline.
    entries = [
        AuditEntry(
            n,
            datetime(2024, 1, 2, tzinfo=UTC),
            1001,
            "alice",
            1001,
            "status",
            "main\n" + "x" * 400,
            Outcome.REFUSED,
            "too many arguments",
            1,
        )
        for n in range(100, 0, -1)
    ]

    chunks = split_message(render.audit(entries))

    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) <= TELEGRAM_LIMIT
        plain(chunk)


def test_split_message_keeps_short_text_whole() -> None:
    text = "<b>a</b>\n<code>b</code>"

    assert split_message(text) == [text]


def test_split_message_never_cuts_inside_a_tag_or_entity() -> None:
    line = f"<b>{html.escape('<&>')}</b> <code>{html.escape(HOSTILE)}</code> &amp; x"
    text = "\n".join(f"{n} {line}" for n in range(400))

    chunks = split_message(text)

    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) <= TELEGRAM_LIMIT
        plain(chunk)
    assert "\n".join(chunks) == text


@pytest.mark.parametrize("limit", [10, 11, 12, 13, 14, 64, TELEGRAM_LIMIT])
def test_split_message_cuts_a_single_over_long_line_between_entities(limit: int) -> None:
    body = "&" * (3 * limit) + "é<" * limit
    line = f"<b>{html.escape(body)}</b>"

    chunks = split_message(line, limit=limit)

    assert len(chunks) > 1
    for chunk in chunks:
        assert 0 < len(chunk) <= limit
    assert "".join(plain(chunk) for chunk in chunks) == body


def test_split_message_puts_a_long_line_between_its_neighbours() -> None:
    long_line = "y" * (TELEGRAM_LIMIT + 10)
    text = f"first\n{long_line}\nlast"

    chunks = split_message(text)

    assert all(len(c) <= TELEGRAM_LIMIT for c in chunks)
    assert chunks[0] == "first"
    assert chunks[-1].endswith("last")
    assert "".join(plain(c) for c in chunks).replace("\n", "") == f"first{long_line}last"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "–"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 kB"),
        (1536, "1.5 kB"),
        (16 * 1024 * 1024, "16.0 MB"),
        (3 * 1024**3, "3.0 GB"),
        (5 * 1024**4, "5.0 TB"),
        (2048 * 1024**4, "2048.0 TB"),
    ],
)
def test_human_bytes(value: int | None, text: str) -> None:
    assert human_bytes(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "–"),
        (0.0, "0.0 s"),
        (2.345, "2.3 s"),
        (9.96, "10 s"),
        (42, "42 s"),
        (119.9, "2 min"),
        (120, "2 min"),
        (150, "2 min 30 s"),
        (5400, "1 h 30 min"),
        (7200, "2 h"),
        (90061, "1 d 1 h"),
    ],
)
def test_one_duration_format(value: float | None, text: str) -> None:
    """/status lags, ETAs, alert ages and mute lengths all read the same: 150 s is
    '2 min 30 s' everywhere (it was also '2.5 min')."""
    assert human_seconds(value) == text
    if value is not None:
        assert render.human_duration(value) == text


@pytest.mark.parametrize(
    ("application_name", "state"),
    [("pg_basebackup", "backup"), ("pg2", "backup")],
)
async def test_basebackup_walsender_is_a_backup_not_the_replica_it_rebuilds(
    application_name: str, state: str
) -> None:
    # pg_basebackup --slot=pg2 for a rebuild of pg2: its walsender carries pg2's slot name
    backup = walsender(555, application_name, "pg2", state=state, replay_lag_bytes=None)
    pg = FakePostgres.healthy()
    pg.walsenders["pg1"] = [backup, walsender(202, "pg3", "pg3")]
    pg.fail("snapshot", "pg2", NodeUnavailable("pg2", "connection refused <stopped>"))
    service = ReplicationService(make_config(), pg)

    [status] = await service.status("main")

    pg2 = next(r for r in status.replicas if r.node == "pg2")
    assert pg2.state == "down"
    assert pg2.sender is None
    assert pg2.down_reason == "connection refused <stopped>"
    assert status.backups == (backup,)
    assert status.unknown_senders == ()
    shown = plain(render.status([status]))
    assert "1/2 replicas streaming" in shown
    assert "pg2 replica · down · slot pg2" in shown
    assert "reason: connection refused <stopped>" in shown
    assert "base backup running: pid 555" in shown
    assert "pg3 replica · streaming · slot pg3" in shown


async def test_a_replica_streaming_as_pg_basebackup_is_shown_streaming() -> None:
    # A replica an old rebuild left with application_name=pg_basebackup in primary_conninfo.
    left_behind = walsender(201, "pg_basebackup", "pg2")
    pg = FakePostgres.healthy()
    pg.walsenders["pg1"] = [left_behind, walsender(202, "pg3", "pg3")]
    service = ReplicationService(make_config(), pg)

    [status] = await service.status("main")

    pg2 = next(r for r in status.replicas if r.node == "pg2")
    assert pg2.state == "streaming" and pg2.sender == left_behind
    assert status.backups == ()
    shown = plain(render.status([status]))
    assert "2/2 replicas streaming" in shown
    assert "base backup" not in shown


async def test_the_wal_stream_of_a_rebuild_is_part_of_the_backup() -> None:
    # pg_basebackup -R --slot=pg2 as application_name pg2: files + WAL stream on pg2's slot.
    files = walsender(555, "pg2", None, state="backup", replay_lag_bytes=None)
    stream = dataclasses.replace(
        walsender(556, "pg2", "pg2", replay_lag_bytes=None), replay_lsn=None
    )
    pg = FakePostgres.healthy()
    pg.walsenders["pg1"] = [files, stream, walsender(202, "pg3", "pg3")]
    pg.fail("snapshot", "pg2", NodeUnavailable("pg2", "connection refused"))
    service = ReplicationService(make_config(), pg)

    [status] = await service.status("main")

    pg2 = next(r for r in status.replicas if r.node == "pg2")
    assert pg2.state == "down" and pg2.sender is None
    assert status.backups == (files, stream)
    assert "1/2 replicas streaming" in plain(render.status([status]))


async def test_status_matches_replicas_by_slot_then_application_name() -> None:
    pg = FakePostgres.healthy()
    pg.walsenders["pg1"] = [
        walsender(201, "walreceiver", "pg2"),  # matched by slot despite the default name
        walsender(202, "pg3", None),  # no slot: matched by application_name
        walsender(203, HOSTILE, "stray"),
    ]
    service = ReplicationService(make_config(), pg)

    [status] = await service.status("main")

    assert [(r.node, r.sender.pid if r.sender else None) for r in status.replicas] == [
        ("pg2", 201),
        ("pg3", 202),
    ]
    assert [s.pid for s in status.unknown_senders] == [203]
    assert f"unconfigured standby {HOSTILE}" in plain(render.status([status]))


def test_every_alert_rule_has_its_wording_in_one_table() -> None:
    """Headline, details and hint of every rule come from one table keyed by the rule."""
    from bot.models import AlertRule
    from handlers.render.alerts import RULE_TEXT

    assert set(RULE_TEXT) == set(AlertRule)
