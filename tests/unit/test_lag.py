"""One lag definition: /status, the alert rules and the metrics agree on an idle replica."""

from __future__ import annotations

import dataclasses

from bot.models import ClusterStatus, ReplicaView, WalSender
from bot.services.monitor.rules import time_lag_seconds
from handlers import render
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import walsender


def idle_sender_with_stale_replay_lag() -> WalSender:
    """pg2 replayed everything it was sent, but replay_lag still says 12 s (kept on idle)."""
    return dataclasses.replace(walsender(201, "pg2", "pg2"), replay_lag_s=12.0)


def test_an_idle_replica_with_a_stale_replay_lag_has_no_lag_in_status_and_in_the_monitor() -> None:
    sender = idle_sender_with_stale_replay_lag()
    view = ReplicaView("pg2", "pg2", "streaming", sender, None)

    assert time_lag_seconds(sender) == 0.0
    assert view.lag_seconds == 0.0
    shown = parse_telegram_html(render.status([ClusterStatus("main", "pg1", None, "x", (view,))]))
    assert "replay lag 0.0 s" in shown[0]


def test_a_replica_behind_what_was_sent_reports_the_servers_replay_lag() -> None:
    sender = dataclasses.replace(
        walsender(201, "pg2", "pg2"), replay_lsn="0/3000000", replay_lag_s=12.0
    )
    view = ReplicaView("pg2", "pg2", "streaming", sender, None)

    assert time_lag_seconds(sender) == 12.0
    assert view.lag_seconds == 12.0


def test_an_unknown_replay_position_is_unknown_lag() -> None:
    sender = dataclasses.replace(walsender(201, "pg2", "pg2"), replay_lsn=None, replay_lag_s=None)

    assert time_lag_seconds(sender) is None
    assert ReplicaView("pg2", "pg2", "streaming", sender, None).lag_seconds is None
