"""The alert rules: snapshots of one cluster's nodes + thresholds -> conditions. Pure.

:func:`evaluate` looks at one poll of every node of a cluster and says what is wrong
(:class:`bot.models.Condition`) and what it could not judge (``unknown``: the (node, rule)
pairs whose data was missing, e.g. the primary did not answer, so "not streaming" of a
replica is neither confirmed nor cleared). The lifecycle (:mod:`.alerts`) turns conditions
into firing and resolved alerts; nothing here reads a clock or does I/O.

Rules and their defaults (see :class:`bot.config.Thresholds`):

=================== ===================================================== ====================
node_down           the poll failed (connect / query timeout)             2 consecutive polls
cluster_unreachable every node's poll failed (instead of N node_down)    2 consecutive polls
not_streaming       replica absent from pg_stat_replication (slot          immediate
                    active_pid / application_name), state ≠ streaming, or
                    its pg_stat_wal_receiver.status ≠ streaming
byte_lag            current LSN − replay_lsn                              50 MB / 100 MB, 60 s
time_lag            replay_lag; 0 when replayed = received (idle primary) 30 s / 300 s
slot_inactive       active = false                                         10 min
slot_retained       current LSN − restart_lsn; ETA to ``lost``             1 GB / 5 GB
slot_at_risk        wal_status extended / unreserved / lost                immediate
role_mismatch       in recovery ≠ configured role                          immediate
role_change         pg_is_in_recovery() flipped (event)                    immediate
timeline_change     timeline changed (event)                               immediate
slotless_wal        replica without a slot: its position − oldest WAL      < 25 % of the WAL
                    segment in the primary's pg_wal (critical: behind it)  kept, 2 polls
=================== ===================================================== ====================

``pg_basebackup`` walsenders (:func:`bot.models.basebackup_pids`) never count as replicas: they
are not lagging, and a backup that holds a replica's slot (a rebuild) turns its "not streaming"
into a warning.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.config import ClusterConfig, NodeConfig, Thresholds
from bot.models import (
    AlertRule,
    Condition,
    FigureValue,
    NodeFacts,
    NodeRole,
    NodeSnapshot,
    Severity,
    SlotInfo,
    WalSender,
    basebackup_pids,
    replay_lag_seconds,
)
from bot.services.replication import match_sender
from bot.services.slotview import slotless_risk

NODE_RULES = (AlertRule.NODE_DOWN, AlertRule.ROLE_MISMATCH)
REPLICA_RULES = (AlertRule.NOT_STREAMING, AlertRule.BYTE_LAG, AlertRule.TIME_LAG)
SLOT_RULES = (AlertRule.SLOT_INACTIVE, AlertRule.SLOT_RETAINED, AlertRule.SLOT_AT_RISK)
CLUSTER_NODE = ""  # the node field of cluster-wide conditions


@dataclass(frozen=True)
class Evaluation:
    """What one poll of a cluster found."""

    cluster: str
    conditions: tuple[Condition, ...]
    unknown: frozenset[tuple[str, AlertRule]] = frozenset()
    facts: dict[str, NodeFacts] = field(default_factory=dict)

    def is_unknown(self, node: str, rule: AlertRule) -> bool:
        """True when this poll could not judge ``rule`` on ``node``."""
        return (node, rule) in self.unknown


def evaluate(
    cluster: ClusterConfig,
    snapshots: Mapping[str, NodeSnapshot | None],
    thresholds: Thresholds,
    previous: Mapping[str, NodeFacts] | None = None,
    slot_rates: Mapping[str, float] | None = None,
    rebuilding: Mapping[str, int] | None = None,
    positions: Mapping[str, str] | None = None,
) -> Evaluation:
    """Apply every rule to one poll of ``cluster``.

    ``rebuilding`` maps the replicas the bot itself is rebuilding now to their job id: such a
    replica being down or not streaming is expected, so those alerts are warnings naming the
    job (they turn critical if it is still so once the job ended).

    ``snapshots`` maps each node name to its snapshot of this poll, or None when no fresh
    answer is available (the node's poll is still running). ``previous`` holds each node's
    last known role and timeline; ``slot_rates`` the WAL growth of each slot in bytes/s;
    ``positions`` each replica's last known WAL position (for a replica without a slot that
    stopped: the WAL it will need when it comes back).
    """
    found = _Found(cluster.name)
    polled = [snapshots.get(n.name) for n in cluster.nodes]
    if all(s is not None and not s.ok for s in polled):
        _cluster_unreachable(cluster, polled, thresholds, found)
        return found.result()
    if any(s is None for s in polled):
        found.unknown.add((CLUSTER_NODE, AlertRule.CLUSTER_UNREACHABLE))
    jobs = rebuilding or {}
    for node in cluster.nodes:
        _node_rules(
            node,
            snapshots.get(node.name),
            thresholds,
            (previous or {}).get(node.name),
            found,
            jobs.get(node.name),
        )
    primary = snapshots.get(cluster.primary.name)
    primary_ok = _is_primary(primary)
    matched = replica_senders(cluster, primary)
    senders = primary.walsenders if primary else ()
    backup_pids = basebackup_pids(senders)
    backups = [s for s in senders if s.pid in backup_pids]
    for replica in cluster.replicas:
        _replica_rules(
            replica,
            primary_ok,
            matched.get(replica.name),
            backups,
            snapshots.get(replica.name),
            thresholds,
            found,
            jobs.get(replica.name),
        )
    for replica in cluster.replicas:
        _slotless_rule(
            cluster.name,
            replica,
            primary if primary_ok else None,
            matched.get(replica.name),
            snapshots.get(replica.name),
            (positions or {}).get(replica.name),
            thresholds,
            found,
        )
    if primary_ok and primary is not None:
        users = {r.slot: r.name for r in cluster.replicas if r.slot}
        for slot in primary.slots:
            _slot_rules(
                cluster.primary.name, slot, users.get(slot.name), thresholds, slot_rates, found
            )
    else:
        found.unknown.update((cluster.primary.name, rule) for rule in SLOT_RULES)
    return found.result()


class _Found:
    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.conditions: list[Condition] = []
        self.unknown: set[tuple[str, AlertRule]] = set()
        self.facts: dict[str, NodeFacts] = {}

    def add(
        self,
        node: str,
        rule: AlertRule,
        severity: Severity,
        figures: dict[str, FigureValue],
        subject: str = "",
        *,
        polls: int = 1,
        hold_s: float = 0.0,
        since: float | None = None,
        repeat: bool = True,
        event: bool = False,
    ) -> None:
        self.conditions.append(
            Condition(
                self.cluster,
                node,
                rule,
                severity,
                subject,
                figures,
                polls=polls,
                hold_s=hold_s,
                since=since,
                repeat=repeat,
                event=event,
            )
        )

    def result(self) -> Evaluation:
        return Evaluation(self.cluster, tuple(self.conditions), frozenset(self.unknown), self.facts)


def _cluster_unreachable(
    cluster: ClusterConfig,
    polled: Sequence[NodeSnapshot | None],
    thresholds: Thresholds,
    found: _Found,
) -> None:
    """Every node failed: one cluster-wide condition, the per-node rules stay as they were."""
    reasons = [s.error for s in polled if s is not None and s.error]
    found.add(
        CLUSTER_NODE,
        AlertRule.CLUSTER_UNREACHABLE,
        Severity.CRITICAL,
        {"nodes": len(cluster.nodes), "reason": reasons[0] if reasons else "no answer"},
        polls=thresholds.node_down_polls,
        repeat=False,
    )
    for node in cluster.nodes:
        found.unknown.update((node.name, rule) for rule in (*NODE_RULES, *REPLICA_RULES))
        found.unknown.add((node.name, AlertRule.SLOTLESS_WAL))
    found.unknown.update((cluster.primary.name, rule) for rule in SLOT_RULES)


def _node_rules(
    node: NodeConfig,
    snapshot: NodeSnapshot | None,
    thresholds: Thresholds,
    previous: NodeFacts | None,
    found: _Found,
    rebuild_job: int | None = None,
) -> None:
    if snapshot is None:
        found.unknown.update((node.name, rule) for rule in NODE_RULES)
        return
    if not snapshot.ok or snapshot.in_recovery is None:
        found.add(
            node.name,
            AlertRule.NODE_DOWN,
            Severity.CRITICAL if rebuild_job is None else Severity.WARNING,
            {
                "reason": snapshot.error or "no answer",
                "role": node.role.value,
                "rebuild_job": rebuild_job,
            },
            polls=thresholds.node_down_polls,
        )
        found.unknown.add((node.name, AlertRule.ROLE_MISMATCH))
        return
    in_recovery = snapshot.in_recovery
    # A replica's timeline is unknown while its WAL receiver is down: keep the last one seen.
    timeline = snapshot.timeline
    if timeline is None and previous is not None:
        timeline = previous.timeline
    found.facts[node.name] = NodeFacts(in_recovery, timeline)
    should_recover = node.role is NodeRole.REPLICA
    if in_recovery != should_recover:
        found.add(
            node.name,
            AlertRule.ROLE_MISMATCH,
            Severity.CRITICAL,
            {"configured": node.role.value, "actual": _role_word(in_recovery)},
        )
    if previous is None:
        return
    if previous.in_recovery != in_recovery:
        found.add(
            node.name,
            AlertRule.ROLE_CHANGE,
            Severity.CRITICAL,
            {"was": _role_word(previous.in_recovery), "now": _role_word(in_recovery)},
            event=True,
        )
    if (
        previous.timeline is not None
        and snapshot.timeline is not None
        and previous.timeline != snapshot.timeline
    ):
        found.add(
            node.name,
            AlertRule.TIMELINE_CHANGE,
            Severity.WARNING,
            {"was": previous.timeline, "now": snapshot.timeline},
            event=True,
        )


def _role_word(in_recovery: bool) -> str:
    return "replica" if in_recovery else "primary"


def _is_primary(snapshot: NodeSnapshot | None) -> bool:
    return snapshot is not None and snapshot.ok and snapshot.in_recovery is False


def replica_senders(cluster: ClusterConfig, primary: NodeSnapshot | None) -> dict[str, WalSender]:
    """Configured replica name -> its walsender on the primary (pg_basebackup never counts)."""
    if primary is None or not _is_primary(primary):
        return {}
    backup_pids = basebackup_pids(primary.walsenders)
    candidates = [s for s in primary.walsenders if s.pid not in backup_pids]
    matched: dict[str, WalSender] = {}
    for replica in cluster.replicas:
        sender = match_sender(replica, candidates)
        if sender is not None:
            candidates.remove(sender)
            matched[replica.name] = sender
    return matched


def _replica_rules(
    replica: NodeConfig,
    primary_ok: bool,
    sender: WalSender | None,
    backups: Sequence[WalSender],
    snapshot: NodeSnapshot | None,
    thresholds: Thresholds,
    found: _Found,
    rebuild_job: int | None = None,
) -> None:
    problems: list[str] = []
    unsure = False
    if not primary_ok:
        unsure = True
    elif sender is None:
        problems.append("absent from pg_stat_replication on the primary")
    elif sender.state != "streaming":
        problems.append(f"walsender state is {sender.state or 'unknown'}")
    receiver_status: str | None = None
    if snapshot is None or not snapshot.ok:
        unsure = True
    elif snapshot.in_recovery:
        receiver_status = snapshot.receiver.status if snapshot.receiver else None
        if receiver_status != "streaming":
            problems.append(f"WAL receiver is {receiver_status or 'not running'}")
    if problems:
        backup = next((b for b in backups if replica.slot and b.slot_name == replica.slot), None)
        found.add(
            replica.name,
            AlertRule.NOT_STREAMING,
            Severity.WARNING
            if backup is not None or rebuild_job is not None
            else Severity.CRITICAL,
            {
                "rebuild_job": rebuild_job,
                "reason": "; ".join(problems),
                "walsender": (sender.state if sender else None) or "absent",
                "receiver": receiver_status or ("unknown" if unsure else "not running"),
                "slot": replica.slot,
                "basebackup": backup is not None,
            },
        )
    elif unsure:
        found.unknown.add((replica.name, AlertRule.NOT_STREAMING))
    if sender is None:
        found.unknown.update((replica.name, r) for r in (AlertRule.BYTE_LAG, AlertRule.TIME_LAG))
        return
    _byte_lag(replica.name, sender, thresholds, found)
    _time_lag(replica.name, sender, thresholds, found)


def _level(value: float, warning: float, critical: float) -> Severity | None:
    if value >= critical:
        return Severity.CRITICAL
    if value >= warning:
        return Severity.WARNING
    return None


def _byte_lag(node: str, sender: WalSender, thresholds: Thresholds, found: _Found) -> None:
    lag = sender.replay_lag_bytes
    if lag is None:
        found.unknown.add((node, AlertRule.BYTE_LAG))
        return
    level = _level(lag, thresholds.lag_bytes_warning, thresholds.lag_bytes_critical)
    if level is not None:
        found.add(
            node,
            AlertRule.BYTE_LAG,
            level,
            {
                "lag_bytes": lag,
                "warning": thresholds.lag_bytes_warning,
                "critical": thresholds.lag_bytes_critical,
                "replay_lsn": sender.replay_lsn,
            },
            hold_s=thresholds.lag_for_s,
        )


#: The one lag definition (:func:`bot.models.replay_lag_seconds`), kept under its old name.
time_lag_seconds = replay_lag_seconds


def _time_lag(node: str, sender: WalSender, thresholds: Thresholds, found: _Found) -> None:
    lag = time_lag_seconds(sender)
    if lag is None:
        found.unknown.add((node, AlertRule.TIME_LAG))
        return
    level = _level(lag, thresholds.lag_time_warning_s, thresholds.lag_time_critical_s)
    if level is not None:
        found.add(
            node,
            AlertRule.TIME_LAG,
            level,
            {
                "lag_s": lag,
                "warning": thresholds.lag_time_warning_s,
                "critical": thresholds.lag_time_critical_s,
            },
        )


def _slot_rules(
    primary: str,
    slot: SlotInfo,
    used_by: str | None,
    thresholds: Thresholds,
    slot_rates: Mapping[str, float] | None,
    found: _Found,
) -> None:
    base: dict[str, FigureValue] = {
        "retained": slot.retained_bytes,
        "wal_status": slot.wal_status,
        "used_by": used_by,
        "slot_type": slot.slot_type,
    }
    if not slot.active:
        since = slot.inactive_since.timestamp() if slot.inactive_since is not None else None
        found.add(
            primary,
            AlertRule.SLOT_INACTIVE,
            Severity.WARNING,
            {**base, "after": thresholds.slot_inactive_after_s},
            subject=slot.name,
            hold_s=thresholds.slot_inactive_after_s,
            since=since,
        )
    retained = slot.retained_bytes
    if retained is not None:
        level = _level(
            retained, thresholds.slot_retained_warning, thresholds.slot_retained_critical
        )
        if level is not None:
            rate = (slot_rates or {}).get(slot.name)
            eta = (
                slot.safe_wal_size / rate
                if rate and rate > 0 and slot.safe_wal_size is not None
                else None
            )
            found.add(
                primary,
                AlertRule.SLOT_RETAINED,
                level,
                {
                    **base,
                    "safe_wal_size": slot.safe_wal_size,
                    "rate": rate,
                    "eta_lost_s": eta,
                    "warning": thresholds.slot_retained_warning,
                    "critical": thresholds.slot_retained_critical,
                },
                subject=slot.name,
            )
    risk = _slot_risk(slot)
    if risk is not None:
        found.add(
            primary,
            AlertRule.SLOT_AT_RISK,
            risk,
            {
                **base,
                "safe_wal_size": slot.safe_wal_size,
                "invalidation_reason": slot.invalidation_reason,
                "lost": slot.wal_status == "lost" or slot.invalidation_reason is not None,
            },
            subject=slot.name,
        )


def _slot_risk(slot: SlotInfo) -> Severity | None:
    if slot.wal_status in {"unreserved", "lost"} or slot.invalidation_reason is not None:
        return Severity.CRITICAL
    if slot.wal_status == "extended":
        return Severity.WARNING
    return None


def _slotless_rule(
    cluster: str,
    replica: NodeConfig,
    primary: NodeSnapshot | None,
    sender: WalSender | None,
    snapshot: NodeSnapshot | None,
    last_position: str | None,
    thresholds: Thresholds,
    found: _Found,
) -> None:
    """A replica no slot protects, measured in bytes of WAL the primary still keeps.

    margin = replica position − start of the oldest segment in the primary's pg_wal; kept =
    primary's current LSN − that start. Warning when margin < slotless_margin_pct % of kept,
    critical when margin < 0 (the WAL it needs is gone). An idle primary keeps its WAL and a
    caught-up replica has margin = kept, so neither makes it fire. Unknown (state kept) while
    the primary, the oldest segment or the replica's position cannot be read.
    """
    if primary is None:
        found.unknown.add((replica.name, AlertRule.SLOTLESS_WAL))
        return
    if primary.wal_keep is None:
        return  # a probe without the WAL facts (none for this rule to judge)
    risk = slotless_risk(cluster, replica, primary, sender, snapshot, last_position)
    if risk is None:
        return  # a slot protects it: resolved
    if risk.margin_bytes is None or risk.kept_bytes is None:
        found.unknown.add((replica.name, AlertRule.SLOTLESS_WAL))
        return
    figures: dict[str, FigureValue] = {
        "position": risk.replay_lsn,
        "oldest_segment": risk.oldest_segment,
        "margin": risk.margin_bytes,
        "kept": risk.kept_bytes,
        "wal_keep_size": risk.wal_keep_size,
        "archive_mode": risk.archive_mode,
        "margin_pct": thresholds.slotless_margin_pct,
        "connected": sender is not None,
    }
    if risk.lost:
        found.add(replica.name, AlertRule.SLOTLESS_WAL, Severity.CRITICAL, figures)
    elif risk.margin_bytes < risk.kept_bytes * thresholds.slotless_margin_pct / 100:
        found.add(replica.name, AlertRule.SLOTLESS_WAL, Severity.WARNING, figures, polls=2)


class GrowthTracker:
    """WAL growth of each slot, from the retained bytes of recent polls (bytes per second).

    A slot that shrinks (its consumer caught up) starts over. The rate is the slope between
    the oldest and the newest sample in ``window_s``; None until ``min_span_s`` is covered.
    """

    def __init__(self, window_s: float = 900.0, min_span_s: float = 10.0) -> None:
        self._window = window_s
        self._min_span = min_span_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def add(self, key: str, at: float, retained: int | None) -> None:
        """Record one sample of ``key`` (None forgets the slot)."""
        if retained is None:
            self._samples.pop(key, None)
            return
        samples = self._samples.setdefault(key, deque())
        if samples and retained < samples[-1][1]:
            samples.clear()
        samples.append((at, retained))
        while samples and at - samples[0][0] > self._window:
            samples.popleft()

    def forget_except(self, keys: set[str], prefix: str) -> None:
        """Drop slots under ``prefix`` that no longer exist."""
        for key in [k for k in self._samples if k.startswith(prefix) and k not in keys]:
            del self._samples[key]

    def rate(self, key: str) -> float | None:
        """Bytes per second, or None with too little history."""
        samples = self._samples.get(key)
        if not samples or len(samples) < 2:
            return None
        (t0, v0), (t1, v1) = samples[0], samples[-1]
        if t1 - t0 < self._min_span:
            return None
        return (v1 - v0) / (t1 - t0)
