"""A not-streaming alert's details are worded from the states the monitor recorded, so a
Russian alert chat reads no English reason (the monitor's figures are PostgreSQL states)."""

from __future__ import annotations

from bot.models import Alert, AlertNotice, AlertRule, AlertState, NoticeKind, Severity
from handlers import render
from handlers.i18n import language
from tests.unit.test_i18n_tour import english_runs


def not_streaming(walsender: str, receiver: str) -> AlertNotice:
    alert = Alert(
        id=1,
        cluster="main",
        node="pg2",
        rule=AlertRule.NOT_STREAMING,
        subject="pg2",
        severity=Severity.CRITICAL,
        figures={
            "reason": "WAL receiver is not running",  # what 0.1 stored: not shown any more
            "walsender": walsender,
            "receiver": receiver,
            "slot": "pg2",
        },
        state=AlertState.FIRING,
        first_seen=0.0,
        fired_at=0.0,
    )
    return AlertNotice(NoticeKind.FIRING, alert, 0.0)


def test_not_streaming_details_are_russian_in_a_russian_chat() -> None:
    cases = (("absent", "not running"), ("streaming", "not running"), ("absent", "unknown"))
    for walsender, receiver in cases:
        with language("ru"):
            text = render.alert_notice(not_streaming(walsender, receiver))
        assert not english_runs(text), (text, english_runs(text))
        assert "WAL receiver is" not in text


def test_not_streaming_details_in_english_name_both_sides() -> None:
    with language("en"):
        text = render.alert_notice(not_streaming("absent", "not running"))
    assert "absent from pg_stat_replication on the primary; WAL receiver is not running" in text
    assert "walsender absent · WAL receiver not running · slot pg2" in text
