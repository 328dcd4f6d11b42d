"""Words of the rebuild preflight's findings (``preflight.*`` phrases).

The lines themselves are drawn by :func:`handlers.render.check.item_line`, like /check's.
"""

from __future__ import annotations

from bot.models import CheckItem
from handlers.i18n import N_, _
from handlers.render.check import item_detail, item_label
from handlers.render.phrases import register

PREFLIGHT_TEXTS = {
    "preflight.lock": N_("rebuild of {node} already in progress (job {job}, {state}, step {step})"),
    "preflight.lock.fix": N_(
        "wait for it, or /rebuild NODE --rollback / --abandon if it was interrupted"
    ),
    "preflight.primary.in_recovery": N_("{node} is in recovery: not a primary"),
    "preflight.primary.in_recovery.fix": N_("fix the topology in the config before rebuilding"),
    "preflight.primary.ok": N_("{node} is primary (PostgreSQL {version})"),
    "preflight.primary.down": N_("primary unreachable: {reason}"),
    "preflight.primary.down.fix": N_("a rebuild copies from the primary: bring it back first"),
    "preflight.target.primary": N_(
        "{node} answers and is NOT in recovery: it is a primary; refusing to wipe it"
    ),
    "preflight.target.primary.fix": N_("check which node is the primary"),
    "preflight.target.replica": N_("{node} is a replica (in recovery)"),
    "preflight.target.down": N_(
        "{node} does not answer ({reason}); that is why it is being rebuilt"
    ),
    "preflight.ssh.failed": N_("{reason}"),
    "preflight.ssh.fix": N_("check ssh.host/port/user/key_file/known_hosts"),
    "preflight.ssh.ok": N_("{host} as {user}; {path} exists"),
    "preflight.name.not_streaming": N_("{node} does not stream now"),
    "preflight.name.streams": N_("{node} streams as {name}"),
    "preflight.name.streams_sync": N_("{node} streams as {name} (sync_state {sync_state})"),
    "preflight.name.from_config": N_("the new copy streams as {name} (from the config)"),
    "preflight.name.kept": N_("the new copy streams as {name} (kept)"),
    "preflight.name.from_conninfo": N_(
        "the new copy streams as {name} (from the replica's primary_conninfo)"
    ),
    "preflight.name.from_cluster_name": N_(
        "the new copy streams as {name} (from its cluster_name)"
    ),
    "preflight.name.node_name": N_("the new copy streams as {name} (its node name)"),
    "preflight.walsenders": N_("max_wal_senders = {maximum}, {used} in use"),
    "preflight.walsenders.ok": N_(
        "max_wal_senders = {maximum}, {used} in use (pg_basebackup needs 2)"
    ),
    "preflight.walsenders.fix": N_(
        "raise max_wal_senders on the primary: --wal-method=stream needs two"
    ),
    "preflight.data_dir.missing": N_("{path} does not exist on {host}"),
    "preflight.data_dir.fix": N_("check data_dir in the config"),
    "preflight.login.ok": N_("{host} reaches {primary_host}:{port} as {user} (IDENTIFY_SYSTEM)"),
    "preflight.login.failed": N_("the replica host cannot open a replication connection: {output}"),
    "preflight.login.fix": N_(
        "check the primary's pg_hba.conf 'replication' line and the replica host's ~/.pgpass"
    ),
    "preflight.names.taken": N_("{paths} already exist(s)"),
    "preflight.names.taken.fix": N_("run /rebuild again for new names"),
    "preflight.names.free": N_("{name} is free"),
    "preflight.data_directory.hidden": N_("SHOW data_directory is not visible to the bot's role"),
    "preflight.data_directory.hidden.fix": N_("grant pg_monitor (or pg_read_all_settings) to it"),
    "preflight.data_directory.other": N_("{node} runs from {shown}, not from data_dir {path}"),
    "preflight.data_directory.other.fix": N_("set data_dir to the directory the server runs from"),
    "preflight.data_directory.ok": N_("{node} runs from {path}"),
    "preflight.disk.unknown": N_("free space unknown"),
    "preflight.disk.size_unknown": N_("{free_bytes} free; primary size unknown"),
    "preflight.disk": N_(
        "{free_bytes} free, a copy needs about {need_bytes} (old directory is kept)"
    ),
    "preflight.disk.fix": N_("free space on the replica's filesystem"),
    "preflight.settings.unknown": N_("primary settings unknown: {reason}"),
    "preflight.setting.unreadable": N_("{setting}: could not read the replica's value"),
    "preflight.lower": N_(
        "{setting} = {value} is lower than on the primary, where it is {primary}"
    ),
    "preflight.lower.fix": N_(
        "set {setting} = {primary} (or more) in {node}'s configuration: it would not start"
    ),
    "preflight.vs_primary": N_("{setting} = {value} (primary {primary})"),
    "preflight.layout.symlink": N_(
        "{path} is a symlink (to {target}): a rebuild would replace the link with a directory"
    ),
    "preflight.layout.symlink.fix": N_("set data_dir to the real directory ({target})"),
    "preflight.layout.mount": N_("{path} is a mount point: it cannot be moved aside"),
    "preflight.layout.mount.fix": N_(
        "rebuild this replica by hand, or use a data_dir below the mount point"
    ),
    "preflight.layout.wal_symlink": N_(
        "{path} is a symlink (to {target}): a rebuild does not handle a separate WAL directory"
    ),
    "preflight.layout.wal_symlink.fix": N_("rebuild this replica by hand (pg_basebackup --waldir)"),
    "preflight.layout.tablespace": N_(
        "{path} is not empty (1 entry): a rebuild does not handle tablespaces"
    ),
    "preflight.layout.tablespaces": N_(
        "{path} is not empty ({entries} entries): a rebuild does not handle tablespaces"
    ),
    "preflight.layout.tablespaces.fix": N_(
        "rebuild this replica by hand (pg_basebackup --tablespace-mapping)"
    ),
    "preflight.layout.ok": N_("{path}: a directory, pg_wal inside, no tablespaces"),
    "preflight.identity.unreadable": N_(
        "{path} holds no readable pg_control (pg_controldata): "
        "nothing proves it is {node}'s data directory"
    ),
    "preflight.identity.other": N_(
        "{path} belongs to another cluster: system identifier {mine}, the primary's is {primary_id}"
    ),
    "preflight.identity.other.fix": N_(
        "check data_dir in the config: it must be {node}'s data directory"
    ),
    "preflight.identity.ok": N_(
        "{path} is a copy of {primary}'s cluster (system identifier {mine})"
    ),
    "preflight.slot.leftover": N_(
        "slot {copy} already exists on {primary}: left by an earlier rebuild, "
        "it would be taken for this one's rollback copy"
    ),
    "preflight.slot.leftover.fix": N_(
        "if no rebuild of {node} needs it any more, drop it with /dropslot {copy}"
    ),
    "preflight.slot.missing": N_("slot {slot} does not exist on {primary}"),
    "preflight.slot.missing.fix": N_("it will be created as the first step"),
    "preflight.slot.type": N_("slot {slot} is {type}"),
    "preflight.slot.type.fix": N_("use a physical slot"),
    "preflight.slot.inactive": N_("slot {slot} exists and is inactive"),
    "preflight.slot.basebackup": N_("slot {slot} is held by a running pg_basebackup (PID {pid})"),
    "preflight.slot.basebackup.fix": N_("wait until it ends, or stop it"),
    "preflight.slot.own": N_("slot {slot} is held by {node} itself; released when it stops"),
    "preflight.slot.other": N_(
        "slot {slot} is active for PID {pid} (application_name {holder}), not {node}"
    ),
    "preflight.slot.other.fix": N_("find the process using the slot and stop it"),
    "preflight.confirmation.stale": N_(
        "job {job} ({state}) of {node} ran after this plan was made"
    ),
    "preflight.confirmation.stale.fix": N_("run /rebuild again to see the node as it is now"),
}
register(PREFLIGHT_TEXTS)


def preflight_refused(item: CheckItem) -> str:
    """The short line after a failed preflight's report: which check failed, and why."""
    return _("preflight failed: {name}: {detail}").format(
        name=item_label(item.name), detail=item_detail(item)
    )
