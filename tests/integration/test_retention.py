"""Retention at start-up: the running bot deletes sent alert messages and resolved alerts
older than monitor.retention_days from its store, and nothing else."""

from __future__ import annotations

import time

import pytest

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.models import AlertState, OutgoingMessage
from bot.sandbox import LocalReplicationSet
from tests.fakebotapi import FakeBotApi
from tests.integration.test_monitor import (
    api,
    audit_file,
    module_replication,
    monitored,
    replication,
)
from tests.unit.test_store_migrations import DAY, alert

pytestmark = pytest.mark.integration
__all__ = ["api", "module_replication", "replication"]  # fixtures


async def test_the_bot_prunes_old_history_when_its_monitor_starts(
    replication: LocalReplicationSet, api: FakeBotApi
) -> None:
    path = audit_file()
    now = time.time()
    store = SqliteAlertStore(path)
    await store.open()
    try:
        async with store.transaction() as tx:
            old = await tx.insert_alert(alert(7, AlertState.RESOLVED, now - 100 * DAY, 0))
            kept = await tx.insert_alert(alert(8, AlertState.RESOLVED, now - 10 * DAY, 0))
            sent_old = await tx.enqueue(-100, None, OutgoingMessage("old"))
            sent_new = await tx.enqueue(-100, None, OutgoingMessage("new"))
        await store.mark_sent(sent_old, 1, now - 100 * DAY)
        await store.mark_sent(sent_new, 2, now - 10 * DAY)
    finally:
        await store.close()

    async with monitored(replication, api, path) as bot:  # retention_days: 90 (default)
        store = bot.runtime.alert_store
        assert await store.get(old.id) is None
        assert await store.get(kept.id) is not None
        assert [row[0] for row in await store.outbox_rows()] == [sent_new]
