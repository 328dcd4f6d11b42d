"""/check wording, and the lines of a prerequisite item (shared with the rebuild preflight).

The service returns each item's ``detail``/``fix``/``notes`` as :class:`~bot.phrases.Phrase`
values; their ``check.*`` texts are registered here (the ``preflight.*`` ones in
:mod:`handlers.render.preflight`). An item's ``name`` is a PostgreSQL setting name (shown as
is) or one of the labels of :data:`LABELS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import (
    CheckItem,
    CheckLevel,
    ClusterCheck,
)
from handlers.i18n import N_, _
from handlers.render.common import _LEVEL_ICON, esc
from handlers.render.phrases import register, say

#: Item names that are not PostgreSQL's own words; anything else (setting names,
#: ``application_name``, ``data_dir``, ``ssh``) is shown as the service named it.
LABELS = {
    "reachable": N_("reachable"),
    "pg_hba replication": N_("pg_hba replication"),
    "pg_rewind readiness": N_("pg_rewind readiness"),
    "slot": N_("slot"),
    "lock": N_("lock"),
    "primary": N_("primary"),
    "target": N_("target"),
    "walsenders": N_("walsenders"),
    "layout": N_("layout"),
    "tablespaces": N_("tablespaces"),
    "directory names": N_("directory names"),
    "identity": N_("identity"),
    "replication login": N_("replication login"),
    "disk": N_("disk"),
    "settings": N_("settings"),
    "confirmation": N_("confirmation"),
}

CHECK_TEXTS = {
    "check.reason": N_("{reason}"),
    "check.primary_down.fix": N_("start the primary or fix its DSN"),
    "check.replica_down": N_("{reason}; settings not compared"),
    "check.wal_level": N_("wal_level = {value}"),
    "check.wal_level.fix": N_("set wal_level = replica and restart the primary"),
    "check.setting": N_("{setting} = {value}"),
    "check.copied": N_("{setting} = {value} (copied to new replicas)"),
    "check.primary_on.fix": N_("set {setting} = on (replicas inherit it from pg_basebackup)"),
    "check.replica_on.fix": N_("set {setting} = on on {node}"),
    "check.capacity": N_("{setting} = {maximum}, {used} in use, {free} free"),
    "check.capacity.unknown": N_("{setting} = {maximum}, usage unknown"),
    "check.capacity.zero.fix": N_("set {setting} = 10 and restart the primary"),
    "check.capacity.senders.fix": N_(
        "raise {setting} (need {need} free: pg_basebackup --wal-method=stream needs two)"
    ),
    "check.capacity.slots.fix": N_(
        "raise {setting} (need {need} free: each replica needs its own slot)"
    ),
    "check.listen": N_("listen_addresses = '{value}'"),
    "check.listen.loopback": N_("listen_addresses = '{value}' (loopback only)"),
    "check.listen.empty.fix": N_(
        "set listen_addresses = '*' (or the primary's address) and restart"
    ),
    "check.listen.loopback.fix": N_(
        "replicas on other hosts cannot connect: listen on the primary's address"
    ),
    "check.hba.unreadable": N_("cannot read pg_hba_file_rules with the bot's role"),
    "check.hba.unreadable.fix": N_(
        "GRANT SELECT ON pg_hba_file_rules and EXECUTE ON FUNCTION pg_hba_file_rules() "
        "to the bot's role, or check pg_hba.conf by hand"
    ),
    "check.hba.rule": N_("line {line}: {rule}"),
    "check.hba.errors": N_("{errors} line(s) with errors"),
    "check.hba.none": N_("no pg_hba.conf line allows replication"),
    "check.hba.none.fix": N_(
        "add 'host replication REPLUSER REPLICA_ADDR/32 scram-sha-256' and reload "
        "('all' does not cover replication)"
    ),
    "check.rewind": N_("wal_log_hints = {wal_log_hints}, data_checksums = {data_checksums}"),
    "check.rewind.off": N_(
        "wal_log_hints = {wal_log_hints}, data_checksums = {data_checksums}: "
        "after a divergence /repair cannot pg_rewind it, only copy it in full"
    ),
    "check.rewind.fix": N_("set wal_log_hints = on on {node} (needs a restart)"),
    "check.unknown": N_("{setting}: unknown"),
    "check.lower": N_("{setting} = {value} is lower than on the primary, where it is {primary}"),
    "check.lower.fix": N_(
        "set {setting} = {primary} (or more) on {node}; it will not start otherwise"
    ),
    "check.vs_primary": N_("{setting} = {value} (primary {primary})"),
    "check.slotless": N_(
        "streams without a replication slot; protected only by wal_keep_size = {wal_keep_size}"
    ),
    "check.slotless.keep_unknown": N_("streams without a replication slot; wal_keep_size unknown"),
    "check.slotless.waldir_denied": N_(
        "oldest WAL in pg_wal unknown: permission denied for pg_ls_waldir() "
        "(GRANT pg_monitor, or EXECUTE ON FUNCTION pg_ls_waldir(), to the bot's role)"
    ),
    "check.slotless.oldest_unknown": N_("oldest WAL in pg_wal unknown"),
    "check.slotless.oldest": N_("oldest WAL in pg_wal {segment}"),
    "check.slotless.oldest_kept": N_("oldest WAL in pg_wal {segment} ({kept} kept)"),
    "check.slotless.margin": N_("replica {margin} ahead of it"),
    "check.slotless.archive": N_("archive_mode = {archive_mode}"),
    "check.slotless.fix": N_(
        "/attachslot {node} (the primary then keeps the WAL until the replica has it)"
    ),
    "check.slotless.lost": N_(
        "no slot, and the WAL it needs from {replay_lsn} is gone "
        "(oldest on the primary: {oldest_segment})"
    ),
    "check.slotless.lost.fix": N_("it can no longer catch up by streaming: /rebuild {node}"),
}
register(CHECK_TEXTS)


def item_label(name: str) -> str:
    """The item's name in the reply's language (a setting name stays as it is)."""
    label = LABELS.get(name)
    return _(label) if label is not None else name


def item_detail(item: CheckItem) -> str:
    """What was found, with its further clauses, as plain text (the caller escapes it)."""
    return "; ".join(say(p) for p in (item.detail, *item.notes))


def item_line(item: CheckItem, with_node: bool = True) -> str:
    """``icon node · name: detail → fix`` (the fix only when the item is not OK), as HTML."""
    where = f"{esc(item.node)} · " if with_node else ""
    line = f"{_LEVEL_ICON[item.level]} {where}{esc(item_label(item.name))}: "
    line += esc(item_detail(item))
    if item.fix is not None and item.level is not CheckLevel.OK:
        line += f" → {esc(say(item.fix))}"
    return line


def check(clusters: Sequence[ClusterCheck]) -> str:
    """The /check reply: one line per prerequisite with its fix."""
    blocks = []
    for cluster in clusters:
        counts = {level: sum(1 for i in cluster.items if i.level is level) for level in CheckLevel}
        lines = [
            f"{_LEVEL_ICON[cluster.worst]} <b>{esc(cluster.cluster)}</b> "
            + _("prerequisites: {ok} ok, {warn} warn, {fail} fail").format(
                ok=counts[CheckLevel.OK], warn=counts[CheckLevel.WARN], fail=counts[CheckLevel.FAIL]
            )
        ]
        lines.extend(item_line(item) for item in cluster.items)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
