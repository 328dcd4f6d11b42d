"""Words of plans and their runs: the step titles (``step.*``) a --dry-run, a confirmation
and a progress message show for each :class:`~bot.services.plans.model.Step` of a rebuild, a
repair or a slot change, and what the progress and the ending of a rebuild or repair say
(``progress.*``). The services give a key and values (names, paths, LSNs, settings as
PostgreSQL prints them); the sentences are here."""

from __future__ import annotations

from collections.abc import Sequence

from bot.phrases import Phrase
from bot.services.plans.model import Step
from handlers.i18n import N_
from handlers.render.phrases import register, say

register(
    {
        # rebuild (bot/services/rebuild/plan.py) and its rollback
        "step.create_slot": N_("create slot {slot} on {primary}"),
        "step.stop": N_("stop {node}"),
        "step.check_stopped": N_("check the server is stopped"),
        "step.slot_released": N_("wait until slot {slot} is inactive"),
        "step.keep_wal": N_("keep the old replica's WAL in {slot}"),
        "step.move_aside": N_("move the data directory aside to {path}"),
        "step.basebackup": N_("pg_basebackup from {primary}"),
        "step.restore_files": N_("restore replica-local config files"),
        "step.start": N_("start {node}"),
        "step.verify": N_("verify it streams"),
        "step.release_wal": N_("drop {slot}"),
        "step.stop_new": N_("stop the new copy"),
        "step.check_new_stopped": N_("check the new copy is stopped"),
        "step.set_aside_new": N_("set the new copy aside as {path}"),
        "step.put_back_old": N_("put the old directory back"),
        "step.restore_slot": N_("restore {slot} from {source}"),
        "step.start_old": N_("start the old {node}"),
        # repair: resume and parameters
        "step.wait_streaming": N_("wait until {node} streams"),
        "step.keep_auto_conf": N_("keep a copy of postgresql.auto.conf as {file}"),
        "step.set_setting": N_("set {name} on {node}"),
        "step.set_value": N_("set {name} = {value} on {node}"),
        "step.reload": N_("reload {node}'s configuration"),
        "step.edit_auto_conf": N_("set {settings} in postgresql.auto.conf"),
        "step.standby_signal": N_("create standby.signal"),
        "step.start_new_setting": N_("start {node} with the new setting"),
        # repair: rewind
        "step.create_slot_keeping": N_("create slot {slot} on {primary} (keeps WAL from now on)"),
        "step.stop_live_primary": N_("stop {node}, which runs AS A PRIMARY (serving clients)"),
        "step.stopped": N_("wait until it is stopped"),
        "step.check_clean": N_("check it was shut down cleanly"),
        "step.save_diverged": N_(
            "save the WAL after {lsn}, history files and pg_control in {path}"
        ),
        "step.rewind_dry_run": N_("pg_rewind --dry-run"),
        "step.rewind": N_("pg_rewind from {primary}"),
        "step.rewind_or_full": N_(
            "pg_rewind from {primary} (on failure: set aside, then a full copy)"
        ),
        "step.standby_config": N_("add primary_slot_name = '{slot}' and standby.signal"),
        "step.check_config": N_(
            "check standby.signal, primary_slot_name and application_name as the server reads them"
        ),
        "step.streaming_as": N_("verify it streams as {name} on slot {slot}"),
        # /attachslot and /detachslot (bot/services/slotless.py)
        "step.create_slot_reserving": N_(
            "create physical slot {slot} on {primary}, reserving WAL now"
        ),
        "step.set_primary_slot_name": N_(
            "set primary_slot_name on {node} and reload its configuration "
            "(its WAL receiver reconnects)"
        ),
        "step.walsender_holds_slot": N_("the primary's walsender for {node} holds slot {slot}"),
        "step.node_stopped": N_("{node} is stopped"),
        "step.slot_name_in_auto_conf": N_("set primary_slot_name in {node}'s postgresql.auto.conf"),
        "step.reset_primary_slot_name": N_(
            "clear primary_slot_name on {node} and reload its configuration "
            "(its WAL receiver reconnects)"
        ),
        "step.slot_inactive": N_("slot {slot} is released (no walsender holds it)"),
        "step.drop_slot": N_("drop slot {slot} on {primary}"),
        "step.streams_without_slot": N_("{node} streams again, without a slot"),
    }
)


def step_title(step: Step) -> str:
    """A step's title in the reply's language (plain text: the caller escapes it)."""
    return say(step.title)


def said(parts: Sequence[Phrase]) -> str:
    """An ending's parts in the reply's language, joined with "; " (after a part ending in a
    colon, with a space): plain text, the caller escapes it."""
    text = ""
    for part in parts:
        words = say(part)
        if text:
            text += " " if text.endswith(":") else "; "
        text += words
    return text


register(
    {
        # rebuild (bot/services/rebuild/service.py)
        "progress.rebuilt": N_("{node} streams again; old data kept in {path}"),
        "progress.cancelled": N_("cancelled by {by}"),
        "progress.step_error": N_("{step}: {error}"),
        "progress.internal": N_("{step}: internal error {error}"),
        "progress.stat_failed": N_("{step}: could not stat {path}"),
        "progress.failed.stop": N_("{step}: the stop command failed"),
        "progress.failed.slot_active": N_(
            "{step}: slot {slot} is still active: another process uses it"
        ),
        "progress.failed.still_running": N_(
            "{step}: {node} is still running (pg_ctl status exit {status})"
        ),
        "progress.failed.move_aside": N_("{step}: could not move {path} aside"),
        "progress.failed.basebackup": N_("{step}: pg_basebackup exited with {status}"),
        "progress.failed.restore_files": N_("{step}: could not restore local files"),
        "progress.failed.start": N_("{step}: {node} did not start"),
        "progress.failed.verify": N_("{step}: {node} does not stream after {timeout_s}:"),
        "progress.failed.verify_silent": N_(
            "{step}: {node} does not stream after {timeout_s} (no answer)"
        ),
        "progress.interrupted": N_("bot stopped during step {step}"),
        "progress.restarted": N_("bot restarted during step {step}"),
        "progress.interrupted_rebuild": N_("interrupted rebuild"),
        "progress.rolling_back": N_("rolling back:"),
        "progress.rollback_failed": N_("ROLLBACK FAILED:"),
        "progress.abandoned": N_("abandoned by {by}"),
        "progress.old_removed": N_("old directory removed by {by}"),
        # its rollback (bot/services/rebuild/rollback.py and service.py)
        "progress.rollback.all_exist": N_(
            "the data, old and failed directories all exist; nothing was moved, sort them "
            "out by hand"
        ),
        "progress.rollback.unrecorded_old": N_(
            "a directory with this job's old-directory name exists, but the job did not "
            "record moving one there; nothing was moved"
        ),
        "progress.rollback.old_gone": N_(
            "the old data directory is gone and the data directory is not it; nothing was moved"
        ),
        "progress.rollback.none_exist": N_(
            "neither the data directory nor the old directory this job moved aside exists"
        ),
        "progress.rollback.leftover": N_("pg_basebackup still running: PID {pids}"),
        "progress.rollback.new_not_stopped": N_("the new server does not stop"),
        "progress.rollback.set_aside_failed": N_("could not set the new copy aside"),
        "progress.rollback.set_aside_exists": N_(
            "could not set the new copy aside: the target exists"
        ),
        "progress.rollback.put_back_failed": N_("could not put the old directory back"),
        "progress.rollback.put_back_exists": N_(
            "could not put the old directory back: the target exists"
        ),
        "progress.rollback.old_not_started": N_("the old {node} did not start"),
        "progress.rollback.old_restored": N_("old data directory restored"),
        "progress.rollback.old_restored_kept": N_(
            "old data directory restored (partial copy kept as {path})"
        ),
        "progress.rollback.slot_restored": N_("slot {slot} restored to the old replica's position"),
        "progress.rollback.old_streams": N_("the old {node} streams again"),
        "progress.rollback.old_not_streaming": N_(
            "the old {node} is running but NOT streaming yet: check /status"
        ),
        "progress.rollback.dirs_unchanged": N_("directories as they were"),
        "progress.rollback.primary_down": N_(
            "the primary does not answer ({reason}), so slot {slot} was not restored: run "
            "/rebuild {node} --rollback again once it is back"
        ),
        # an interrupted job's host, at start-up
        "progress.inspect.failed": N_("cannot inspect: {error}"),
        "progress.inspect.step": N_("interrupted in step {step}"),
        "progress.inspect.backup": N_("pg_basebackup running (PID {pids})"),
        "progress.inspect.no_backup": N_("no pg_basebackup"),
        "progress.inspect.running": N_("server running"),
        "progress.inspect.stopped": N_("server stopped"),
        "progress.inspect.dirs": N_("directories: {dirs}"),
        "progress.inspect.no_dirs": N_("directories: none"),
        # repair (bot/services/repair/service.py)
        "progress.repaired": N_("{node} streams"),
        "progress.repair_cancelled": N_("cancelled"),
        "progress.repair_failed": N_("failed"),
        "progress.cannot_connect": N_("cannot connect: {error}"),
        "progress.undo_failed": N_("undo failed:"),
        "progress.seen": N_("seen:"),
        # what a streaming check saw (bot/services/rebuild/verify.py)
        "verify.replica_silent": N_("replica does not answer"),
        "verify.receiver": N_("receiver {status}"),
        "verify.receiver_off": N_("receiver not running"),
        "verify.not_in_recovery": N_("NOT in recovery"),
        "verify.slot_missing": N_("slot missing"),
        "verify.slot_inactive": N_("slot {slot} inactive"),
        "verify.slot_active": N_("slot {slot} active (PID {pid})"),
        "verify.walsender_gone": N_("its walsender not in pg_stat_replication"),
        "verify.walsender": N_("walsender {state} as {name}, sync_state {sync_state}"),
    }
)
