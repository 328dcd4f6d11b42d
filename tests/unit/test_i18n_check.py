"""/check and the rebuild preflight in Russian: every finding the services can return is worded
from the catalog (no English sentence leaks), the replies stay valid Telegram HTML, and the
English rendering still reads as it did when services built the sentences themselves."""

from __future__ import annotations

import re
import string

from bot.config import ClusterConfig
from bot.errors import NodeUnavailable
from bot.models import (
    CheckItem,
    CheckLevel,
    ClusterCheck,
    HbaRule,
    PreflightReport,
    ReplicaView,
    SlotlessRisk,
)
from bot.phrases import Phrase, Value
from bot.services.rebuild.plan import Commands
from bot.services.rebuild.preflight import DataDirLayout, _identity_item, _layout_items
from bot.services.replication import (
    _capacity_item,
    _hba_item,
    _listen_item,
    _primary_items,
    _replica_items,
    _rewind_item,
    slotless_item,
)
from handlers import render
from handlers.i18n import language
from handlers.render.check import CHECK_TEXTS, LABELS
from handlers.render.preflight import PREFLIGHT_TEXTS
from tests.fakebotapi import parse_telegram_html
from tests.unit.fakes import HEALTHY_SETTINGS, FakePostgres, make_bot, rebuild_config
from tests.unit.test_i18n import assert_telegram_html
from tests.unit.test_i18n_tour import english_runs, russian_bot

# Commands and SQL quoted in fixes, as the user types them into psql or pg_hba.conf.
VERBATIM = (
    "GRANT SELECT ON pg_hba_file_rules",
    "EXECUTE ON FUNCTION pg_hba_file_rules()",
    "EXECUTE ON FUNCTION pg_ls_waldir()",
    "GRANT pg_monitor",
    "host replication REPLUSER REPLICA_ADDR/32 scram-sha-256",
    "SHOW data_directory",
    "/rebuild NODE --rollback / --abandon",
)

#: A value for every placeholder a check/preflight text has (names, paths, LSNs, numbers).
SAMPLE: dict[str, Value] = {
    "node": "pg2",
    "setting": "max_connections",
    "value": "50",
    "primary": "pg1",
    "maximum": 10,
    "used": 3,
    "free": 7,
    "need": 2,
    "reason": "ECONNREFUSED",
    "line": 99,
    "rule": "host replication repluser 10.0.0.0/24 scram-sha-256",
    "errors": 2,
    "wal_log_hints": "off",
    "data_checksums": "off",
    "wal_keep_size": "64MB",
    "segment": "000000010000000000000003",
    "kept": "48MB",
    "margin": "16MB",
    "archive_mode": "off",
    "replay_lsn": "0/3000148",
    "oldest_segment": "000000010000000000000005",
    "job": 7,
    "state": "running",
    "step": "basebackup",
    "version": "16.4",
    "host": "db2",
    "user": "postgres",
    "path": "/srv/pg2/data",
    "name": "pg2",
    "sync_state": "async",
    "primary_host": "db1",
    "port": 5432,
    "output": "FATAL:  28000",  # the server's own words would stay as it printed them
    "paths": "/srv/pg2/data.old-x",
    "shown": "/srv/other",
    "free_bytes": 3 * 1024**3,
    "need_bytes": 5 * 1024**3,
    "target": "/mnt/pg2",
    "entries": 3,
    "mine": "7390000000000000001",
    "primary_id": "7390000000000000002",
    "copy": "pg2_rb",
    "slot": "pg2",
    "type": "logical",
    "pid": 4242,
    "holder": "pg_receivewal",
}


def every_phrase(texts: dict[str, str]) -> list[Phrase]:
    phrases = []
    for key, template in texts.items():
        names = {n for _, n, _, _ in string.Formatter().parse(template) if n}
        phrases.append(Phrase(key, tuple(sorted((n, SAMPLE[n]) for n in names))))
    return phrases


def as_items(phrases: list[Phrase], names: list[str]) -> tuple[CheckItem, ...]:
    """Each phrase as a failed item's detail and as its fix, under every label in turn."""
    return tuple(
        CheckItem("pg2", names[i % len(names)], CheckLevel.FAIL, phrase, phrase)
        for i, phrase in enumerate(phrases)
    )


TAG = "20261202T030000_0123abcd"


def cluster() -> ClusterConfig:
    """Cluster main of the fake config, with pg2 rebuildable."""
    found = rebuild_config().cluster("main")
    assert found is not None
    return found


def service_items() -> tuple[CheckItem, ...]:
    """Findings built by the services' own functions, in their failing and passing forms."""
    main = cluster()
    pg2 = next(r for r in main.replicas if r.name == "pg2")
    bad = {
        **HEALTHY_SETTINGS,
        "wal_level": "minimal",
        "hot_standby_feedback": "off",
        "listen_addresses": "localhost",
        "max_wal_senders": "0",
    }
    low = {**HEALTHY_SETTINGS, "max_connections": "50", "hot_standby": "off"}
    low.pop("max_locks_per_transaction")
    rules = [
        HbaRule(1, "host", ("replication",), ("repl",), "10.0.0.0/8", "scram-sha-256"),
        HbaRule(2, "host", ("all",), ("all",), None, "bogus", error="invalid auth method"),
    ]
    segment = "000000010000000000000003"
    risk = SlotlessRisk(
        "main", "pg2", "0/3000148", segment, 3 << 24, 1 << 24, 64 << 20, "off", True
    )
    denied = SlotlessRisk("main", "pg2", "0/3", None, None, None, None, None, False)
    lost = SlotlessRisk("main", "pg2", "0/3", segment, 3 << 24, -1, 0, "on", True)
    cmd = Commands(pg2, TAG)
    layout = DataDirLayout(
        symlink_to="/mnt/pg2", wal_symlink_to="/mnt/wal", mount_point=True, tablespaces=2
    )
    return (
        *_primary_items(main, bad, (10, 1)),
        _capacity_item("pg1", "max_replication_slots", HEALTHY_SETTINGS, None, 1, Phrase("x")),
        _listen_item(main, ""),
        _hba_item("pg1", rules),
        _hba_item("pg1", None),
        _hba_item("pg1", []),
        _hba_item("pg1", NodeUnavailable("pg1", "ECONNREFUSED")),
        _rewind_item(pg2, {"wal_log_hints": "off", "data_checksums": "off"}),
        *_replica_items(pg2, low, HEALTHY_SETTINGS),
        *_replica_items(pg2, NodeUnavailable("pg2", "ECONNREFUSED"), HEALTHY_SETTINGS),
        slotless_item(_view(risk)),
        slotless_item(_view(denied)),
        slotless_item(_view(lost)),
        *_layout_items(pg2, cmd, layout),
        _identity_item(main, pg2, cmd, DataDirLayout(system_identifier="1"), "2"),
        _identity_item(main, pg2, cmd, DataDirLayout(), "2"),
    )


def _view(risk: SlotlessRisk) -> ReplicaView:
    return ReplicaView("pg2", None, "streaming", None, None, slotless=risk)


def leaks(html_text: str) -> list[str]:
    for verbatim in VERBATIM:
        html_text = html_text.replace(verbatim, " ")
    # a pg_hba.conf line is quoted as the file has it
    html_text = re.sub(r"\b(host|hostssl|hostnossl|local) replication [^;\n]*", " ", html_text)
    return english_runs(html_text)


def check_reply() -> str:
    labels = [*LABELS, "max_connections", "application_name"]
    items = (*service_items(), *as_items(every_phrase(CHECK_TEXTS), labels))
    return render.check([ClusterCheck("main", items)])


def preflight_reply() -> str:
    labels = [*LABELS, "data_dir", "ssh"]
    items = as_items(every_phrase(PREFLIGHT_TEXTS), labels)
    report = PreflightReport("main", "pg2", items)
    return render.rebuild_preflight(report) + "\n" + render.preflight_refused(items[0])


def split_valid(text: str) -> list[str]:
    parts = render.split_message(text)
    for part in parts:
        assert_telegram_html(part)
        parse_telegram_html(part)
    return parts


def test_every_check_and_preflight_phrase_is_russian_in_valid_html() -> None:
    with language("ru"):
        texts = [*split_valid(check_reply()), *split_valid(preflight_reply())]
    found = {part: leaks(part) for part in texts if leaks(part)}
    assert not found, found
    joined = "\n".join(texts)
    assert "меньше, чем на основном сервере" in joined
    assert "готовность к pg_rewind" in joined and "pg_hba для репликации" in joined
    assert "свободно 3.0 GB, копии нужно около 5.0 GB" in joined
    assert "предварительная проверка не пройдена: доступность: пересоздание pg2 уже идёт" in joined


async def test_check_through_the_dispatcher_is_russian() -> None:
    bot = russian_bot()
    bot.pg.settings_by_node["pg3"] = {**HEALTHY_SETTINGS, "max_worker_processes": "4"}
    chat = await bot.command("/check")
    assert chat.replies
    for reply in chat.replies:
        split_valid(reply.html)
        assert not leaks(reply.html), reply.html
    text = "\n".join(r.html for r in chat.replies)
    assert "max_worker_processes = 4 — меньше, чем на основном сервере, где 8" in text
    assert "задайте max_worker_processes = 8 (или больше) на pg3" in text


async def test_the_english_check_reads_as_before() -> None:
    pg = FakePostgres.healthy()
    pg.settings_by_node["pg3"] = {**HEALTHY_SETTINGS, "max_worker_processes": "4"}
    chat = await make_bot(pg=pg).command("/check main")
    text = render.to_plain_text("\n".join(r.html for r in chat.replies))
    lines = text.splitlines()
    assert "✅ pg1 · wal_level: wal_level = replica" in lines
    assert "✅ pg1 · max_wal_senders: max_wal_senders = 10, 2 in use, 8 free" in lines
    assert "✅ pg1 · hot_standby: hot_standby = on (copied to new replicas)" in lines
    assert (
        "✅ pg1 · pg_hba replication: line 99: host replication repluser 10.0.0.0/24 scram-sha-256"
    ) in lines
    assert (
        "❌ pg3 · max_worker_processes: max_worker_processes = 4 is lower than on the primary, "
        "where it is 8 → set max_worker_processes = 8 (or more) on pg3; it will not start otherwise"
    ) in lines
    assert re.search(
        r"^⚠️ pg2 · pg_rewind readiness: wal_log_hints = \?, data_checksums = \?: ", text, re.M
    )


def test_the_english_preflight_reads_as_before() -> None:
    main = cluster()
    pg2 = next(r for r in main.replicas if r.name == "pg2")
    cmd = Commands(pg2, TAG)
    disk = CheckItem(
        "pg2",
        "disk",
        CheckLevel.FAIL,
        Phrase.of("preflight.disk", free_bytes=1024**3, need_bytes=3 * 1024**3),
        Phrase.of("preflight.disk.fix"),
    )
    mount = _layout_items(pg2, cmd, DataDirLayout(mount_point=True))[0]
    report = PreflightReport("main", "pg2", (mount, disk))
    text = render.to_plain_text(render.rebuild_preflight(report))
    data = cmd.data_dir
    assert text.splitlines() == [
        f"❌ rebuild of pg2 refused: {data} is a mount point: it cannot be moved aside "
        "(and 1 more)",
        f"❌ data_dir: {data} is a mount point: it cannot be moved aside → rebuild this replica "
        "by hand, or use a data_dir below the mount point",
        "❌ disk: 1.0 GB free, a copy needs about 3.0 GB (old directory is kept) → free space on "
        "the replica's filesystem",
    ]
    assert render.preflight_refused(disk) == (
        "preflight failed: disk: 1.0 GB free, a copy needs about 3.0 GB (old directory is kept)"
    )
