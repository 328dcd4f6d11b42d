"""Replication queries and slot management: /status, /slots, /check, /createslot, /dropslot.

The service decides; the Postgres port executes. A node that is down never fails a whole
reply: it becomes a "down" entry with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from bot.config import SLOT_NAME_RE, AppConfig, ClusterConfig, NodeConfig
from bot.errors import InvalidInput, NodeUnavailable, SlotActive, SlotNotFound, UnknownCluster
from bot.models import (
    CheckItem,
    CheckLevel,
    ClusterCheck,
    ClusterSlots,
    ClusterStatus,
    NodeSnapshot,
    ReplicaView,
    SlotInfo,
    WalSender,
    basebackup_pids,
)
from bot.phrases import Phrase
from bot.ports import Postgres
from bot.services.slotview import SlotOverrides, slotless_risk

#: Settings that must be at least as high on a replica as on its primary (hot standby rule).
REWIND_SETTINGS = ("wal_log_hints", "data_checksums")  # pg_rewind needs one of them on
STANDBY_MINIMUMS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
PRIMARY_SETTINGS = (
    "wal_level",
    "max_wal_senders",
    "max_replication_slots",
    "hot_standby",
    "hot_standby_feedback",
    "listen_addresses",
    *STANDBY_MINIMUMS,
)
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
T = TypeVar("T")


def validate_slot_name(name: str) -> str:
    """Return ``name`` if it is a valid physical slot name, else raise InvalidInput."""
    if not SLOT_NAME_RE.match(name):
        raise InvalidInput(Phrase.of("error.slot.invalid_name"))
    return name


class ReplicationService:
    """Reads replication state across the configured clusters and manages slots."""

    def __init__(
        self, config: AppConfig, postgres: Postgres, overrides: SlotOverrides | None = None
    ) -> None:
        """``overrides``: slots attached or detached from the chat, applied over the config."""
        self._config = config
        self._pg = postgres
        self._overrides = overrides or SlotOverrides()

    @property
    def cluster_names(self) -> list[str]:
        """Configured cluster names, in config order."""
        return [c.name for c in self._config.clusters]

    def clusters(self, name: str | None) -> list[ClusterConfig]:
        """The cluster called ``name``, or all clusters when ``name`` is None."""
        if name is None:
            return [self._overrides.apply(c) for c in self._config.clusters]
        cluster = self._config.cluster(name)
        if cluster is None:
            raise UnknownCluster(
                Phrase.of(
                    "error.cluster.unknown", cluster=name, known=", ".join(self.cluster_names)
                )
            )
        return [self._overrides.apply(cluster)]

    def one_cluster(self, name: str | None) -> ClusterConfig:
        """The named cluster, or the only one; InvalidInput when the choice is ambiguous."""
        if name is None and len(self._config.clusters) > 1:
            raise InvalidInput(
                Phrase.of("error.cluster.name_one", known=", ".join(self.cluster_names))
            )
        return self.clusters(name)[0]

    # --- /status ------------------------------------------------------------------------

    async def status(self, cluster: str | None = None) -> list[ClusterStatus]:
        """Primary and replicas of each selected cluster, queried concurrently."""
        return list(
            await asyncio.gather(*(self._cluster_status(c) for c in self.clusters(cluster)))
        )

    async def _cluster_status(self, cluster: ClusterConfig) -> ClusterStatus:
        primary_task = _capture(self._pg.snapshot(cluster.primary))
        replica_tasks = [_capture(self._pg.snapshot(r)) for r in cluster.replicas]
        primary_result, *replica_results = await asyncio.gather(primary_task, *replica_tasks)
        primary = primary_result if isinstance(primary_result, NodeSnapshot) else None
        senders = list(primary.walsenders) if primary else []
        backup_pids = basebackup_pids(senders)
        backups = tuple(s for s in senders if s.pid in backup_pids)
        candidates = [s for s in senders if s.pid not in backup_pids]
        views: list[ReplicaView] = []
        for replica, result in zip(cluster.replicas, replica_results, strict=True):
            sender = match_sender(replica, candidates)
            if sender is not None:
                candidates.remove(sender)
            receiver = result if isinstance(result, NodeSnapshot) else None
            down = result.reason if isinstance(result, NodeUnavailable) else None
            view = _replica_view(replica, sender, receiver, down, primary is not None)
            risk = slotless_risk(cluster.name, replica, primary, sender, receiver)
            views.append(dataclasses.replace(view, slotless=risk) if risk is not None else view)
        return ClusterStatus(
            cluster=cluster.name,
            primary_node=cluster.primary.name,
            primary=primary,
            primary_down=primary_result.reason
            if isinstance(primary_result, NodeUnavailable)
            else None,
            replicas=tuple(views),
            backups=backups,
            unknown_senders=tuple(candidates),
        )

    # --- /slots -------------------------------------------------------------------------

    async def slots(self, cluster: str | None = None) -> list[ClusterSlots]:
        """Replication slots on the primary of each selected cluster."""
        return list(await asyncio.gather(*(self._cluster_slots(c) for c in self.clusters(cluster))))

    async def _cluster_slots(self, cluster: ClusterConfig) -> ClusterSlots:
        try:
            slots = (await self._pg.snapshot(cluster.primary)).slots
        except NodeUnavailable as exc:
            return ClusterSlots(cluster.name, cluster.primary.name, (), error=exc.reason)
        users = {r.slot: r.name for r in cluster.replicas if r.slot}
        named = tuple(dataclasses.replace(s, used_by=users.get(s.name)) for s in slots)
        return ClusterSlots(cluster.name, cluster.primary.name, named)

    async def create_slot(self, slot: str, cluster: str | None = None) -> tuple[str, str]:
        """Create physical slot ``slot`` on the primary; returns (cluster, primary node)."""
        validate_slot_name(slot)
        target = self.one_cluster(cluster)
        await self._pg.create_physical_slot(target.primary, slot)
        return target.name, target.primary.name

    async def slot_for_drop(self, slot: str, cluster: str | None = None) -> tuple[str, SlotInfo]:
        """Check that ``slot`` exists and is inactive before asking to confirm its drop."""
        validate_slot_name(slot)
        target = self.one_cluster(cluster)
        snapshot = await self._pg.snapshot(target.primary)
        found = next((s for s in snapshot.slots if s.name == slot), None)
        if found is None:
            raise SlotNotFound(
                Phrase.of("error.slot.not_found", slot=slot, node=target.primary.name)
            )
        if found.active:
            raise SlotActive(
                Phrase.of("error.slot.active_pid", slot=slot, pid=found.active_pid or "?")
            )
        return target.name, found

    async def drop_slot(self, slot: str, cluster: str | None = None) -> tuple[str, str]:
        """Drop ``slot`` on the primary (refused by the server if it became active)."""
        validate_slot_name(slot)
        target = self.one_cluster(cluster)
        await self._pg.drop_slot(target.primary, slot)
        return target.name, target.primary.name

    # --- /check -------------------------------------------------------------------------

    async def check(self, cluster: str | None = None) -> list[ClusterCheck]:
        """The runbook's prerequisites for each selected cluster."""
        return list(await asyncio.gather(*(self._cluster_check(c) for c in self.clusters(cluster))))

    async def _cluster_check(self, cluster: ClusterConfig) -> ClusterCheck:
        primary = cluster.primary
        primary_settings = await _capture(self._pg.settings(primary, PRIMARY_SETTINGS))
        if isinstance(primary_settings, NodeUnavailable):
            item = CheckItem(
                primary.name,
                "reachable",
                CheckLevel.FAIL,
                Phrase.of("check.reason", reason=primary_settings.reason_phrase),
                Phrase.of("check.primary_down.fix"),
            )
            return ClusterCheck(cluster.name, (item,))
        usage = await _capture(self._pg.usage_counts(primary))
        hba = await _capture(self._pg.replication_hba_rules(primary))
        items: list[CheckItem] = []
        items += _primary_items(cluster, primary_settings, usage)
        items.append(_hba_item(primary.name, hba))
        replica_settings = await asyncio.gather(
            *(
                _capture(
                    self._pg.settings(
                        r,
                        (
                            *STANDBY_MINIMUMS,
                            "hot_standby",
                            "hot_standby_feedback",
                            *REWIND_SETTINGS,
                        ),
                    )
                )
                for r in cluster.replicas
            )
        )
        for replica, settings in zip(cluster.replicas, replica_settings, strict=True):
            items += _replica_items(replica, settings, primary_settings)
        status = await self._cluster_status(cluster)
        items += [slotless_item(view) for view in status.replicas if view.slotless is not None]
        return ClusterCheck(cluster.name, tuple(items))


async def _capture(awaitable: Awaitable[T]) -> T | NodeUnavailable:
    """Await and return the result, or the NodeUnavailable it raised."""
    try:
        return await awaitable
    except NodeUnavailable as exc:
        return exc


def match_sender(replica: NodeConfig, senders: Sequence[WalSender]) -> WalSender | None:
    """The walsender serving ``replica``: by its slot's active_pid, else by application_name
    (the configured ``application_name`` first, then the node name)."""
    if replica.slot:
        for sender in senders:
            if sender.slot_name == replica.slot:
                return sender
    names = [n for n in (replica.application_name, replica.name) if n]
    for name in names:
        for sender in senders:
            if sender.application_name == name:
                return sender
    return None


PROMOTED_STATE = "running as a primary"


def _replica_view(
    replica: NodeConfig,
    sender: WalSender | None,
    receiver: NodeSnapshot | None,
    down: str | None,
    primary_up: bool,
) -> ReplicaView:
    if sender is not None:
        state = sender.state or "unknown"
    elif down is not None:
        state = "down"
    elif not primary_up and receiver is not None:
        state = (receiver.receiver.status if receiver.receiver else None) or "not streaming"
    elif receiver is not None and not receiver.in_recovery:
        state = PROMOTED_STATE  # up, but promoted: a primary of its own (diverged)
    else:
        state = "absent"
    return ReplicaView(
        node=replica.name,
        slot=replica.slot,
        state=state,
        sender=sender,
        receiver=receiver,
        down_reason=down,
    )


def _as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _primary_items(
    cluster: ClusterConfig,
    settings: dict[str, str],
    usage: tuple[int, int] | NodeUnavailable,
) -> list[CheckItem]:
    node = cluster.primary.name
    items: list[CheckItem] = []
    wal_level = settings.get("wal_level", "?")
    items.append(
        CheckItem(node, "wal_level", CheckLevel.OK, Phrase.of("check.wal_level", value=wal_level))
        if wal_level in {"replica", "logical"}
        else CheckItem(
            node,
            "wal_level",
            CheckLevel.FAIL,
            Phrase.of("check.wal_level", value=wal_level),
            Phrase.of("check.wal_level.fix"),
        )
    )
    used_senders, used_slots = usage if isinstance(usage, tuple) else (None, None)
    items.append(
        _capacity_item(
            node,
            "max_wal_senders",
            settings,
            used_senders,
            need=2,
            fix=Phrase.of("check.capacity.senders.fix", setting="max_wal_senders", need=2),
        )
    )
    items.append(
        _capacity_item(
            node,
            "max_replication_slots",
            settings,
            used_slots,
            need=1,
            fix=Phrase.of("check.capacity.slots.fix", setting="max_replication_slots", need=1),
        )
    )
    for name in ("hot_standby", "hot_standby_feedback"):
        value = settings.get(name, "?")
        items.append(
            CheckItem(
                node, name, CheckLevel.OK, Phrase.of("check.copied", setting=name, value=value)
            )
            if value == "on"
            else CheckItem(
                node,
                name,
                CheckLevel.WARN,
                Phrase.of("check.setting", setting=name, value=value),
                Phrase.of("check.primary_on.fix", setting=name),
            )
        )
    items.append(_listen_item(cluster, settings.get("listen_addresses", "")))
    return items


def _capacity_item(
    node: str, name: str, settings: dict[str, str], used: int | None, need: int, fix: Phrase
) -> CheckItem:
    """A walsender/slot headroom item; ``fix`` says why ``need`` of them must be free."""
    maximum = _as_int(settings.get(name))
    if maximum is None or maximum == 0:
        return CheckItem(
            node,
            name,
            CheckLevel.FAIL,
            Phrase.of("check.setting", setting=name, value=str(maximum)),
            Phrase.of("check.capacity.zero.fix", setting=name),
        )
    if used is None:
        return CheckItem(
            node,
            name,
            CheckLevel.WARN,
            Phrase.of("check.capacity.unknown", setting=name, maximum=maximum),
        )
    free = maximum - used
    detail = Phrase.of("check.capacity", setting=name, maximum=maximum, used=used, free=free)
    if free >= need:
        return CheckItem(node, name, CheckLevel.OK, detail)
    return CheckItem(node, name, CheckLevel.WARN, detail, fix)


def _listen_item(cluster: ClusterConfig, listen: str) -> CheckItem:
    node = cluster.primary.name
    detail = Phrase.of("check.listen", value=listen)
    if not listen.strip():
        return CheckItem(
            node,
            "listen_addresses",
            CheckLevel.FAIL,
            detail,
            Phrase.of("check.listen.empty.fix"),
        )
    addresses = {a.strip() for a in listen.split(",")}
    replica_hosts = {r.dsn_host for r in cluster.replicas}
    if addresses <= _LOOPBACK_HOSTS and not replica_hosts <= _LOOPBACK_HOSTS:
        return CheckItem(
            node,
            "listen_addresses",
            CheckLevel.WARN,
            Phrase.of("check.listen.loopback", value=listen),
            Phrase.of("check.listen.loopback.fix"),
        )
    return CheckItem(node, "listen_addresses", CheckLevel.OK, detail)


def _hba_item(node: str, rules: object) -> CheckItem:
    if isinstance(rules, NodeUnavailable):
        return CheckItem(
            node,
            "pg_hba replication",
            CheckLevel.WARN,
            Phrase.of("check.reason", reason=rules.reason),
        )
    if rules is None:
        return CheckItem(
            node,
            "pg_hba replication",
            CheckLevel.WARN,
            Phrase.of("check.hba.unreadable"),
            Phrase.of("check.hba.unreadable.fix"),
        )
    assert isinstance(rules, list)
    errors = [r for r in rules if r.error]
    replication = [r for r in rules if "replication" in r.databases and not r.error]
    if replication:
        lines = [
            Phrase.of(
                "check.hba.rule",
                line=r.line_number,
                rule=f"{r.type} replication {','.join(r.users)} "
                f"{r.address or ''} {r.auth_method}".replace("  ", " "),
            )
            for r in replication[:3]
        ]
        level = CheckLevel.WARN if errors else CheckLevel.OK
        notes = [*lines[1:]]
        if errors:
            notes.append(Phrase.of("check.hba.errors", errors=len(errors)))
        return CheckItem(node, "pg_hba replication", level, lines[0], notes=tuple(notes))
    return CheckItem(
        node,
        "pg_hba replication",
        CheckLevel.FAIL,
        Phrase.of("check.hba.none"),
        Phrase.of("check.hba.none.fix"),
    )


def _rewind_item(replica: NodeConfig, settings: dict[str, str]) -> CheckItem:
    """pg_rewind needs wal_log_hints or data checksums, set before a divergence happens."""
    hints, checksums = settings.get("wal_log_hints", "?"), settings.get("data_checksums", "?")
    if "on" in (hints, checksums):
        return CheckItem(
            replica.name,
            "pg_rewind readiness",
            CheckLevel.OK,
            Phrase.of("check.rewind", wal_log_hints=hints, data_checksums=checksums),
        )
    return CheckItem(
        replica.name,
        "pg_rewind readiness",
        CheckLevel.WARN,
        Phrase.of("check.rewind.off", wal_log_hints=hints, data_checksums=checksums),
        Phrase.of("check.rewind.fix", node=replica.name),
    )


def _replica_items(
    replica: NodeConfig,
    settings: dict[str, str] | NodeUnavailable,
    primary_settings: dict[str, str],
) -> list[CheckItem]:
    if isinstance(settings, NodeUnavailable):
        return [
            CheckItem(
                replica.name,
                "reachable",
                CheckLevel.WARN,
                Phrase.of("check.replica_down", reason=settings.reason_phrase),
            )
        ]
    items: list[CheckItem] = []
    for name in STANDBY_MINIMUMS:
        mine, theirs = _as_int(settings.get(name)), _as_int(primary_settings.get(name))
        if mine is None or theirs is None:
            items.append(
                CheckItem(
                    replica.name, name, CheckLevel.WARN, Phrase.of("check.unknown", setting=name)
                )
            )
        elif mine < theirs:
            items.append(
                CheckItem(
                    replica.name,
                    name,
                    CheckLevel.FAIL,
                    Phrase.of("check.lower", setting=name, value=mine, primary=theirs),
                    Phrase.of("check.lower.fix", setting=name, primary=theirs, node=replica.name),
                )
            )
        else:
            items.append(
                CheckItem(
                    replica.name,
                    name,
                    CheckLevel.OK,
                    Phrase.of("check.vs_primary", setting=name, value=mine, primary=theirs),
                )
            )
    items.append(_rewind_item(replica, settings))
    for name in ("hot_standby", "hot_standby_feedback"):
        value = settings.get(name, "?")
        items.append(
            CheckItem(
                replica.name,
                name,
                CheckLevel.OK,
                Phrase.of("check.setting", setting=name, value=value),
            )
            if value == "on"
            else CheckItem(
                replica.name,
                name,
                CheckLevel.WARN,
                Phrase.of("check.setting", setting=name, value=value),
                Phrase.of("check.replica_on.fix", setting=name, node=replica.name),
            )
        )
    return items


def slotless_item(view: ReplicaView) -> CheckItem:
    """The /check line of a replica that no slot protects: what keeps its WAL today, the fix.

    A warning while the WAL it needs is still on the primary; a failure once it is gone (only a
    rebuild helps then). The oldest WAL segment comes from ``pg_ls_waldir()``, which needs
    ``pg_monitor`` (or ``GRANT EXECUTE``); without it the line says so instead of failing.
    """
    risk = view.slotless
    assert risk is not None
    if risk.lost:
        return CheckItem(
            view.node,
            "slot",
            CheckLevel.FAIL,
            Phrase.of(
                "check.slotless.lost",
                replay_lsn=str(risk.replay_lsn),
                oldest_segment=str(risk.oldest_segment),
            ),
            Phrase.of("check.slotless.lost.fix", node=view.node),
        )
    detail = (
        Phrase.of("check.slotless", wal_keep_size=_mb(risk.wal_keep_size))
        if risk.wal_keep_size is not None
        else Phrase.of("check.slotless.keep_unknown")
    )
    notes: list[Phrase] = []
    if risk.waldir_readable is False:
        notes.append(Phrase.of("check.slotless.waldir_denied"))
    elif risk.oldest_segment is None:
        notes.append(Phrase.of("check.slotless.oldest_unknown"))
    else:
        notes.append(
            Phrase.of(
                "check.slotless.oldest_kept", segment=risk.oldest_segment, kept=_mb(risk.kept_bytes)
            )
            if risk.kept_bytes is not None
            else Phrase.of("check.slotless.oldest", segment=risk.oldest_segment)
        )
        if risk.margin_bytes is not None and risk.margin_bytes >= 0:
            notes.append(Phrase.of("check.slotless.margin", margin=_mb(risk.margin_bytes)))
    notes.append(Phrase.of("check.slotless.archive", archive_mode=risk.archive_mode or "?"))
    return CheckItem(
        view.node,
        "slot",
        CheckLevel.WARN,
        detail,
        Phrase.of("check.slotless.fix", node=view.node),
        notes=tuple(notes),
    )


def _mb(value: int) -> str:
    """Bytes as PostgreSQL shows sizes: kB / MB / GB."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if value >= size:
            return f"{value / size:.4g}{unit}"
    return f"{value}B"
