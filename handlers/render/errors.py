"""Words for the errors services and handlers raise (:class:`bot.errors.ReplbotError` ``phrase``).

Keys start with ``error.``; values are names, paths, LSNs and the messages of PostgreSQL, libpq,
SSH or Telegram themselves, shown verbatim. The dispatcher words an error with
:func:`~handlers.render.phrases.say` in the reply's language; the audit log keeps its
language-neutral form (:func:`error_audit_reason`).
"""

from __future__ import annotations

from bot.errors import ReplbotError
from bot.models import RebuildJob, RebuildProgress
from bot.phrases import Phrase
from handlers.i18n import N_
from handlers.render.phrases import register

TEXTS: dict[str, str] = {
    "error.delivery.token": N_("Telegram refuses the bot's token: {reason}"),
    "error.delivery.rejected": N_("Telegram refused the message: {reason}"),
    "error.repair.plan_changed": N_(
        "the repair plan of {node} changed since it was shown; nothing was run"
    ),
    "error.alert.ambiguous_node": N_(
        "node {node} exists in several clusters; write CLUSTER/{node}"
    ),
    "error.alert.mute_range": N_("mute for at least 1 min and at most 30 days"),
    "error.alert.no_target": N_("'{name}' is neither a cluster ({known}) nor a node"),
    "error.alert.none": N_("there is no alert #{alert}"),
    "error.alert.not_firing": N_("alert #{alert} is not firing any more ({state})"),
    "error.alert.resolved": N_("alert #{alert} is not firing any more (resolved)"),
    "error.alert.unavailable": N_("the alert monitor is not part of this bot"),
    "error.audit.key_file": N_("cannot create the audit key file {path}: {reason}"),
    "error.audit.missing": N_("no audit log at {path}"),
    "error.audit.no_key": N_("no audit key: set {env} or audit.key_file (or keep {path})"),
    "error.audit.no_key_open": N_("the audit log was opened without its key; it cannot be written"),
    "error.auth.chat": N_("this chat is not allowed to use the bot"),
    "error.auth.not_allowed": N_("you are not allowed to use this bot"),
    "error.auth.role": N_("{what} needs the {needed} role; you are {role}"),
    "error.button.invalid": N_("this button is not valid"),
    "error.chart.no_such": N_("no cluster or node called {name}"),
    "error.chart.off": N_("charts are not available: the monitor history is off"),
    "error.chart.window": N_("unknown window {window}: use one of {known}"),
    "error.cluster.name_one": N_("several clusters are configured; name one of: {known}"),
    "error.cluster.unknown": N_("unknown cluster '{cluster}'; known: {known}"),
    "error.cluster.unknown_bare": N_("unknown cluster '{cluster}'"),
    "error.config": N_("{setting}: {problem}"),
    "error.confirm.expired": N_("this confirmation expired; run the command again"),
    "error.confirm.foreign": N_("only the user who asked may press this button"),
    "error.confirm.second_admin": N_("a second admin must approve this; you asked for it"),
    "error.confirm.unknown": N_("this button is no longer valid; run the command again"),
    "error.confirm.used_cancelled": N_("this button was already used (cancelled)"),
    "error.confirm.used_confirmed": N_("this button was already used (confirmed)"),
    "error.confirm.used_expired": N_("this button was already used (expired)"),
    "error.delivery.chat_moved": N_("chat {chat} became supergroup {new_chat}"),
    "error.delivery.chat_refused": N_("chat {chat} refuses the bot: {reason}"),
    "error.delivery.rate_limited": N_("rate limited: retry after {retry_s}"),
    "error.delivery.timeout": N_("Telegram did not answer in time"),
    "error.delivery.unavailable": N_("Telegram unavailable: {reason}"),
    "error.demo.failed": N_("the demo could not do that: {reason}"),
    "error.demo.not_replica": N_("{node} is not a replica of the demo ({replicas})"),
    "error.file.no_remove": N_("could not remove {path}"),
    "error.file.no_stat": N_("could not stat {path}"),
    "error.file.no_write": N_("could not write {path}"),
    "error.file.unreadable": N_("cannot read {path}: {output}"),
    "error.history.write": N_("cannot record the monitor history in {path}: {reason}"),
    "error.input.audit_usage": N_("usage: /audit [N] with N from 1 to {maximum}"),
    "error.input.bad_duration": N_(
        "{value} is not a duration like 30min, 2h or 1d; usage: {usage}"
    ),
    "error.input.cluster_name": N_("invalid cluster name"),
    "error.input.empty": N_("empty command; see /help"),
    "error.input.no_args": N_("this command takes no arguments"),
    "error.input.node_name": N_("invalid node name"),
    "error.input.not_command": N_("not a command; commands start with / — see /help"),
    "error.input.too_long": N_("command too long (more than {limit} characters)"),
    "error.input.too_many": N_("too many arguments: expected at most a cluster name"),
    "error.job.busy": N_(
        "{kind} of {node} refused: already in progress (job {job}, {state}, step {step})"
    ),
    "error.job.busy_unknown": N_("rebuild of {node} refused: already in progress"),
    "error.lang.no_store": N_("this bot cannot remember a language choice (it has no store)"),
    "error.lang.usage": N_("usage: /lang ru or /lang en"),
    "error.node.ambiguous": N_("{node} exists in several clusters; name the cluster too"),
    "error.node.ambiguous_in": N_(
        "node {node} is in several clusters ({clusters}): name the cluster too"
    ),
    "error.node.unknown": N_("unknown node '{node}'"),
    "error.node.unknown_in": N_("unknown node '{node}' in cluster '{cluster}'"),
    "error.node_unavailable": N_("{node} unavailable: {reason}"),
    "error.pg.no_answer": N_("no answer within {timeout_s}"),
    "error.monitor.internal": N_("internal error ({kind})"),
    "error.pg.no_row": N_("the probe returned no row"),
    "error.pg.query_timeout": N_("query timed out after {timeout_s}"),
    "error.pg.too_old": N_("PostgreSQL {version} is older than 14"),
    "error.plan.changed": N_("the plan changed since it was shown; run the command again"),
    "error.plan.unsupported": N_("step {step}: {action} is not supported"),
    "error.rebuild.basebackup_running": N_("pg_basebackup still running: PID {pids}"),
    "error.rebuild.busy": N_(
        "rebuild of {node} refused: already in progress (job {job}, {state}, {where})"
    ),
    "error.rebuild.cancelling": N_("rebuild of {node} is already being cancelled"),
    "error.rebuild.finishing": N_("rebuild of {node} has finished its steps"),
    "error.rebuild.job_changed": N_(
        "the rebuild job of {node} changed since job {job} was shown; run the command again"
    ),
    "error.rebuild.missing_config": N_("{node} cannot be rebuilt: missing config key(s) {keys}"),
    "error.rebuild.no_old_dir": N_("no succeeded rebuild of {node} with an old directory"),
    "error.rebuild.not_a_rebuild": N_(
        "job {job} of {node} is a {kind}, not a rebuild: nothing to move back; check the node and "
        "use --abandon"
    ),
    "error.rebuild.not_running": N_("no rebuild of {node} is running"),
    "error.rebuild.not_streaming": N_("{node} is not streaming; keeping {path}"),
    "error.rebuild.nothing_to_abandon": N_("no interrupted rebuild of {node} to abandon"),
    "error.rebuild.nothing_to_roll_back": N_("no interrupted rebuild of {node} to roll back"),
    "error.rebuild.old_dir_changed": N_(
        "{path} is no longer the old directory of {node} (the last rebuild changed); nothing "
        "removed; run the command again"
    ),
    "error.rebuild.old_dir_removed": N_("the old directory of {node} was already removed"),
    "error.rebuild.preflight": N_("rebuild refused: preflight failed (see above)"),
    "error.rebuild.primary": N_("{node} is the primary of {cluster}; only replicas can be rebuilt"),
    "error.rebuild.rollback_slot_unrestored": N_(
        "{done}; the primary does not answer ({reason}), so slot {slot} was not restored: run "
        "/rebuild {node} --rollback again once it is back"
    ),
    "error.rebuild.rolling_back": N_("rebuild of {node} is rolling back; that cannot be cancelled"),
    "error.remote.connect_failed": N_("{host}: SSH connect failed: {reason}"),
    "error.remote.connect_timeout": N_("{host}: SSH connect timed out"),
    "error.remote.host_key": N_("{host}: host key not verified against known_hosts"),
    "error.remote.no_ssh": N_("{node}: no ssh settings in the config"),
    "error.remote.ssh_failed": N_("{host}: SSH failed: {reason}"),
    "error.remote.timeout": N_("{host}: command timed out after {timeout_s}"),
    "error.repair.admin_only": N_(
        "only an admin may repair {node}; ask one to press Repair or run /repair {node}"
    ),
    "error.repair.alert": N_("alert #{alert} is not about a replica that can be repaired"),
    "error.repair.bad_answer": N_("unexpected {command} answer: {output}"),
    "error.repair.diagnosis": N_("the diagnosis on {host} failed: {output}"),
    "error.repair.history_failed": N_("TIMELINE_HISTORY failed: {output}"),
    "error.repair.identify_failed": N_("IDENTIFY_SYSTEM from {node} failed: {output}"),
    "error.repair.not_diverged": N_("{node} has not diverged from {primary}"),
    "error.repair.off": N_("/repair is not available in this bot"),
    "error.server_refused": N_("refused: {reason} (SQLSTATE {sqlstate})"),
    "error.shutting_down": N_("the bot is shutting down"),
    "error.slot.active": N_("slot {slot} is active on {node}; stop its user first"),
    "error.slot.active_pid": N_("slot {slot} is active (walsender PID {pid}); refusing to drop it"),
    "error.slot.all_used": N_("all replication slots on {node} are in use (max_replication_slots)"),
    "error.slot.disappeared": N_("slot {slot} disappeared from {node}"),
    "error.slot.exists": N_("slot {slot} already exists on {node}"),
    "error.slot.invalid_name": N_(
        "invalid slot name: use 1–63 lower-case letters, digits or underscores"
    ),
    "error.slot.no_replication": N_(
        "permission denied on {node}: the bot's role needs REPLICATION"
    ),
    "error.slot.not_found": N_("slot {slot} does not exist on {node}"),
    "error.slot.refused": N_("slot {slot} on {node}: {reason}"),
    "error.slot.still_active": N_(
        "slot {slot} is still active for PID {pid}: another process uses it"
    ),
    "error.slotless.detach_down": N_(
        "{node} does not answer: primary_slot_name is reset over its SQL connection; start it "
        "first (or /dropslot the slot of a replica that is gone)"
    ),
    "error.slotless.failed_at": N_("failed at {step} (see above)"),
    "error.slotless.has_slot": N_("{node} already streams through slot {slot}; nothing to do"),
    "error.slotless.host_unreachable": N_("cannot reach {node}'s host: {reason}"),
    "error.slotless.no_slot": N_("{node} uses no slot; nothing to detach"),
    "error.slotless.not_stopped": N_(
        "{node} does not answer over SQL but is not stopped (pg_ctl status exited {status}); fix "
        "its connection first"
    ),
    "error.slotless.off": N_("slot attachment is not available in this bot"),
    "error.slotless.primary": N_("{node} is the primary of {cluster}, not a replica"),
    "error.slotless.primary_in_recovery": N_(
        "{node} is in recovery: it is not the primary of {cluster}"
    ),
    "error.slotless.privileges": N_(
        "the bot's role may not set primary_slot_name on {node}; it needs {missing} (granted on "
        "the primary, replicated to the replica)"
    ),
    "error.slotless.slot_exists": N_(
        "slot {slot} already exists on {node}; name another one, or drop it first (/dropslot "
        "{slot})"
    ),
    "error.slotless.stopped_no_shell": N_(
        "{node} does not answer; to attach a slot while it is stopped the bot needs its data_dir, "
        "pg_bin_dir and SSH access in the config (or start it first)"
    ),
    "error.slotless.wal_lost": N_(
        "{node} needs WAL from {lsn}, but the oldest WAL on {primary} is segment {segment}: it "
        "can no longer catch up by streaming; rebuild it (/rebuild {node})"
    ),
    "error.step.exit": N_("{step}: exit {status}: {output}"),
    "error.step_failed": N_("{step}: {reason}"),
    "error.store.not_open": N_("the {store} store is not open"),
    "error.store.open": N_("cannot open the {store} {path}: {reason}"),
    "error.store.too_new": N_(
        "the store {path} has schema version {found}; this replbot knows up to {latest}: upgrade "
        "replbot (or restore the store's backup from before the upgrade); nothing was changed"
    ),
    "error.usage": N_("usage: {usage}"),
    "error.wait.no_answer_yet": N_("no answer yet"),
    "error.wait.not_reached": N_("{probe} not reached in {timeout_s}"),
    "error.wait.timeout": N_("{probe} not reached within {timeout_s} ({last})"),
}

register(TEXTS)


def error_audit_reason(exc: ReplbotError) -> str:
    """An error's reason for the audit log, the same whatever the reply's language: the
    handler's own note (``audit_note``) when it has one, else the phrase's language-neutral
    form (``key name=value ...``, what ``user_message`` holds)."""
    note = getattr(exc, "audit_note", None)
    if isinstance(note, str) and note:
        return note
    return exc.user_message


def rebuild_busy_phrase(job: RebuildJob, progress: RebuildProgress | None) -> Phrase:
    """Why a rebuild, repair or slot change of a node is refused: its lock is held."""
    where = job.step
    if progress is not None and progress.backup is not None and progress.step == "basebackup":
        where = f"basebackup {progress.backup.percent} %"
    return Phrase.of(
        "error.rebuild.busy", node=job.node, job=job.id, state=job.state.value, where=where
    )
