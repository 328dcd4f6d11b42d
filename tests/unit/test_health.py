"""/healthz decisions: the monitor's rounds must advance and the outbox must drain."""

from __future__ import annotations

import json

from bot.services.monitor.health import HealthInputs, evaluate_health, stale_after


def inputs(**overrides: object) -> HealthInputs:
    values: dict[str, object] = {
        "monitor_enabled": True,
        "monitor_running": True,
        "round_ages": {"main": 1.0},
        "stale_after_s": 24.0,
        "outbox_pending": 0,
        "oldest_pending_age_s": None,
        "outbox_stuck_after_s": 600.0,
    }
    values.update(overrides)
    return HealthInputs(**values)  # type: ignore[arg-type]


def test_stale_after_is_three_intervals_plus_timeouts_and_at_least_30s() -> None:
    assert stale_after(interval_s=5, timeout_s=3) == 30.0
    assert stale_after(interval_s=60, timeout_s=10) == 210.0


def test_a_running_monitor_with_recent_rounds_and_an_empty_outbox_is_healthy() -> None:
    report = evaluate_health(inputs())

    assert report.ok
    body = json.loads(report.json())
    assert body["status"] == "ok"
    assert body["problems"] == []
    assert body["monitor"] == {"main": {"last_round_s": 1.0}}


def test_a_cluster_whose_rounds_stopped_advancing_is_named() -> None:
    report = evaluate_health(inputs(round_ages={"main": 1.0, "eu": 31.5}, stale_after_s=30.0))

    assert not report.ok
    assert report.problems == ("monitor: no round of cluster eu for 32 s (limit 30 s)",)
    assert json.loads(report.json())["status"] == "fail"


def test_a_stopped_monitor_is_unhealthy_unless_it_is_disabled_in_the_config() -> None:
    assert evaluate_health(inputs(monitor_running=False)).problems == ("monitor: not running",)
    assert evaluate_health(inputs(monitor_enabled=False, monitor_running=False)).ok


def test_an_outbox_whose_oldest_message_waits_too_long_is_stuck() -> None:
    ok = evaluate_health(inputs(outbox_pending=3, oldest_pending_age_s=10.0))
    stuck = evaluate_health(inputs(outbox_pending=3, oldest_pending_age_s=700.0))

    assert ok.ok
    assert stuck.problems == ("outbox: 3 message(s) pending, the oldest for 700 s (limit 600 s)",)


def test_a_bot_that_no_longer_hears_telegram_is_named_and_shows_its_polls() -> None:
    hearing = evaluate_health(inputs(poll_age_s=4.0, polls_ok=12))
    deaf = evaluate_health(inputs(poll_age_s=75.0, polls_ok=12))

    assert hearing.ok
    assert json.loads(hearing.json())["telegram"] == {"last_poll_s": 4.0, "polls_ok": 12}
    assert deaf.problems == ("telegram: no getUpdates answered for 75 s (limit 60 s)",)
    assert "telegram" not in json.loads(evaluate_health(inputs()).json())  # demo: no Telegram
