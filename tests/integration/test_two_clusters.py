"""Two real clusters whose nodes share names: 'main' and 'billing', each with pg1 + pg2.

Node names repeat across clusters, so every connection, cache and lock must be keyed by
(cluster, node). Each command below names one cluster and must read or change that
cluster's servers only: before the fix, a kept connection of main's pg1 served billing's pg1.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.adapters.monitor_pg import PsycopgMonitorProbe
from bot.app import open_runtime, redactor_for
from bot.config import AppConfig, parse_config
from bot.demo import rebuild_keys
from bot.logsetup import install_redaction
from bot.sandbox import LocalReplicationSet, PgBinaries
from handlers.render.check import item_detail
from tests.conftest import (
    ADMIN_ID,
    LEDGER,
    OPERATOR_ID,
    VIEWER_ID,
    TelegramHarness,
    ptb_serving,
    short_tmpdir,
)
from tests.fakebotapi import FakeBotApi
from tests.integration._helpers import lsn_to_int, plain, reply_call, scratch_set

pytestmark = pytest.mark.integration

MAIN_SENDERS, BILLING_SENDERS = "10", "7"


@pytest.fixture(scope="module")
def two_sets(pg_binaries: PgBinaries) -> Iterator[tuple[LocalReplicationSet, LocalReplicationSet]]:
    """main and billing, both pg1 (primary) + pg2 (replica, slot pg2); billing's WAL is ahead."""
    with (  # fresh_initdb: two system identifiers, as two real clusters have
        scratch_set(
            pg_binaries, fresh_initdb=True, settings={"max_wal_senders": MAIN_SENDERS}
        ) as main,
        scratch_set(
            pg_binaries, fresh_initdb=True, settings={"max_wal_senders": BILLING_SENDERS}
        ) as billing,
    ):
        billing.psql(
            "pg1",
            "CREATE TABLE filler AS SELECT generate_series(1, 1000) AS x;"
            "SELECT pg_switch_wal(); INSERT INTO filler VALUES (1); SELECT pg_switch_wal();"
            "INSERT INTO filler VALUES (2); SELECT pg_switch_wal();",
        )
        yield main, billing


def two_cluster_config(
    main: LocalReplicationSet, billing: LocalReplicationSet, audit_path: Path
) -> AppConfig:
    """One config naming both sets; billing's pg2 carries the keys a rebuild needs."""

    def nodes(rset: LocalReplicationSet, env: str, rebuildable: bool) -> str:
        return "".join(
            "[[clusters.nodes]]\n"
            f'name = "{n.name}"\nrole = "{n.role}"\n'
            f'dsn = "{rset.dsn(n.name)}"\npassword_env = "{env}"\n'
            + (
                rebuild_keys(rset, n.name)
                if n.slot and rebuildable
                else (f'slot = "{n.slot}"\n' if n.slot else "")
            )
            + "\n"
            for n in rset.nodes
        )

    text = (
        "[telegram]\n"
        'token = "123456:TEST-fake-token-abcdef"\n'
        "confirm_timeout = 30\n\n"
        f'[audit]\npath = "{audit_path}"\n\n'
        f'[[users]]\nid = {ADMIN_ID}\nname = "alice-admin"\nrole = "admin"\n\n'
        f'[[users]]\nid = {OPERATOR_ID}\nname = "oscar-operator"\nrole = "operator"\n\n'
        f'[[users]]\nid = {VIEWER_ID}\nname = "vera-viewer"\nrole = "viewer"\n\n'
        '[[clusters]]\nname = "main"\n\n'
        + nodes(main, "REPLBOT_TEST_MAIN_PASSWORD", False)
        + '[[clusters]]\nname = "billing"\n\n'
        + nodes(billing, "REPLBOT_TEST_BILLING_PASSWORD", True)
    )
    environ = {
        "REPLBOT_TEST_MAIN_PASSWORD": main.bot_password,
        "REPLBOT_TEST_BILLING_PASSWORD": billing.bot_password,
    }
    return parse_config(tomllib.loads(text), environ)


@pytest.fixture
async def tg(
    two_sets: tuple[LocalReplicationSet, LocalReplicationSet],
) -> AsyncIterator[TelegramHarness]:
    """The bot over both clusters, through the real PTB client and the fake Bot API."""
    main, billing = two_sets
    config = two_cluster_config(main, billing, short_tmpdir("rba") / "audit.sqlite3")
    LEDGER.audit_paths.append(config.audit.path)
    redactor = redactor_for(config)
    install_redaction(redactor)
    runtime = await open_runtime(config, redactor)
    api = FakeBotApi()
    LEDGER.secrets.add(api.token)
    LEDGER.fake_apis.append(api)
    api.start()
    try:
        async with ptb_serving(runtime, api) as harness:
            yield harness
    finally:
        api.stop()
        await runtime.close()
        for rset in two_sets:
            rset.psql(
                "pg1",
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name <> 'pg2' AND NOT active",
            )


def slot_names(rset: LocalReplicationSet) -> list[str]:
    return rset.psql("pg1", "SELECT slot_name FROM pg_replication_slots ORDER BY 1").splitlines()


def primary_lsn(text: str) -> int:
    found = re.search(r"^pg1 primary · up · .* · LSN (\S+)", text, re.M)
    assert found, text
    return lsn_to_int(found.group(1))


def receiver_port(text: str) -> int:
    found = re.search(r"receiver streaming from 127\.0\.0\.1:(\d+)", text)
    assert found, text
    return int(found.group(1))


async def test_status_of_each_cluster_shows_its_own_servers(
    tg: TelegramHarness, two_sets: tuple[LocalReplicationSet, LocalReplicationSet]
) -> None:
    main, billing = two_sets
    main_lsn = lsn_to_int(main.psql("pg1", "SELECT pg_current_wal_lsn()"))
    billing_lsn = lsn_to_int(billing.psql("pg1", "SELECT pg_current_wal_lsn()"))
    assert billing_lsn > main_lsn + 16 * 1024**2  # the fixture wrote WAL on billing only

    main_text = plain(await reply_call(tg, VIEWER_ID, "/status main"))
    billing_text = plain(await reply_call(tg, VIEWER_ID, "/status billing"))
    main_again = plain(await reply_call(tg, VIEWER_ID, "/status main"))

    assert main_text.startswith("✅ main: 1/1 replicas streaming"), main_text
    assert billing_text.startswith("✅ billing: 1/1 replicas streaming"), billing_text
    assert primary_lsn(billing_text) >= billing_lsn, billing_text
    for text in (main_text, main_again):
        assert primary_lsn(text) < billing_lsn, text
        assert receiver_port(text) == main.primary.port, text
    assert receiver_port(billing_text) == billing.primary.port, billing_text


async def test_slots_and_slot_commands_act_on_the_named_cluster_only(
    tg: TelegramHarness, two_sets: tuple[LocalReplicationSet, LocalReplicationSet]
) -> None:
    main, billing = two_sets
    main.psql("pg1", "SELECT pg_create_physical_replication_slot('only_main')")
    billing.psql("pg1", "SELECT pg_create_physical_replication_slot('only_billing')")
    for rset in two_sets:
        rset.psql("pg1", "SELECT pg_create_physical_replication_slot('keep_me')")

    main_slots = plain(await reply_call(tg, VIEWER_ID, "/slots main"))
    billing_slots = plain(await reply_call(tg, VIEWER_ID, "/slots billing"))
    assert "only_main" in main_slots and "only_billing" not in main_slots, main_slots
    assert "only_billing" in billing_slots and "only_main" not in billing_slots, billing_slots

    created = plain(await reply_call(tg, OPERATOR_ID, "/createslot x billing"))
    assert created == "✅ slot x created on billing/pg1", created
    assert "x" in slot_names(billing) and "x" not in slot_names(main)

    question = await reply_call(tg, ADMIN_ID, "/dropslot keep_me billing")
    assert plain(question).startswith("⚠️ Drop slot keep_me on billing/pg1?"), plain(question)
    markup = question.params.get("reply_markup")
    assert isinstance(markup, dict), question.params
    confirm = markup["inline_keyboard"][0][0]
    mark = tg.api.mark()
    tg.api.push_callback(ADMIN_ID, confirm["callback_data"], question.result["message_id"])
    edit = await tg.api.await_for("editMessageText", lambda c: True, after=mark)
    assert plain(edit) == "✅ slot keep_me dropped on billing/pg1"
    assert "keep_me" not in slot_names(billing)
    assert "keep_me" in slot_names(main), "main's same-named slot was dropped"


async def test_the_monitor_polls_both_clusters_into_distinct_snapshots(
    tg: TelegramHarness, two_sets: tuple[LocalReplicationSet, LocalReplicationSet]
) -> None:
    main, billing = two_sets
    billing.psql("pg1", "SELECT pg_create_physical_replication_slot('only_billing')")
    config = tg.runtime.config
    probe = PsycopgMonitorProbe(config.monitor.timeout_s)
    try:
        snapshots = {
            (cluster.name, node.name): await probe.poll(cluster.name, node)
            for cluster in config.clusters
            for node in cluster.nodes
        }
    finally:
        await probe.close()
    assert {s.name for s in snapshots["billing", "pg1"].slots} == {"only_billing", "pg2"}
    assert {s.name for s in snapshots["main", "pg1"].slots} == {"pg2"}
    billing_receiver = snapshots["billing", "pg2"].receiver
    main_receiver = snapshots["main", "pg2"].receiver
    assert billing_receiver is not None and billing_receiver.sender_port == billing.primary.port
    assert main_receiver is not None and main_receiver.sender_port == main.primary.port


async def test_rebuild_preflight_of_billings_pg2_reads_billings_primary(
    tg: TelegramHarness, two_sets: tuple[LocalReplicationSet, LocalReplicationSet]
) -> None:
    # main's pg1 is read first, so a pool keyed by node name alone would hand it to billing
    plain(await reply_call(tg, VIEWER_ID, "/check main"))
    report, _ = await tg.runtime.services.rebuild.preflight("pg2", "billing")
    details = {item.name: item_detail(item) for item in report.items}
    assert details["walsenders"].startswith(f"max_wal_senders = {BILLING_SENDERS},"), details
    assert details["max_wal_senders"] == (
        f"max_wal_senders = {BILLING_SENDERS} (primary {BILLING_SENDERS})"
    ), details
