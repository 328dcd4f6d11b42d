"""Pure functions: domain snapshots -> Telegram-HTML text. The only place replies are worded.

Every dynamic value goes through :func:`esc`. A reply is split at line boundaries, and tags
open at a split are closed and reopened (see :func:`split_message`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from bot.models import (
    Alert,
    AlertNotice,
    AlertRule,
    AuditEntry,
    AuditVerification,
    CheckLevel,
    ClusterCheck,
    ClusterSlots,
    ClusterStatus,
    Mute,
    NoticeKind,
    Outcome,
    PreflightReport,
    RebuildJob,
    RebuildPlan,
    RebuildProgress,
    RebuildState,
    ReplicaView,
    Severity,
    SlotInfo,
    SlotlessRisk,
    User,
    WalSender,
)
from bot.services.plans.model import Plan as _Plan
from bot.services.plans.model import action_kind, describe
from bot.services.repair.models import (
    Diagnosis as _Diagnosis,
)
from bot.services.repair.models import (
    PathName as _PathName,
)
from bot.services.repair.models import (
    Precondition as _Precondition,
)
from bot.services.repair.models import (
    RepairOption as _RepairOption,
)
from bot.services.repair.models import (
    RepairProgress as _RepairProgress,
)
from bot.services.repair.models import (
    RepairProposal as _RepairProposal,
)
from bot.services.slotless import SlotChangeOutcome, SlotPlan

TELEGRAM_LIMIT = 4096
MAX_SLOT_LINES = 50  # per cluster in /slots
MAX_AUDIT_LINES = 100  # rows shown by /audit
AUDIT_FIELD_CHARS = 100  # each free-text field of an audit row, on one line
OK, WARN, FAIL, INFO = "✅", "⚠️", "❌", "ℹ️"
_LEVEL_ICON = {CheckLevel.OK: OK, CheckLevel.WARN: WARN, CheckLevel.FAIL: FAIL}


def esc(value: object) -> str:
    """HTML-escape any value for Telegram's HTML parse mode."""
    return html.escape(str(value), quote=True)


def code(value: object) -> str:
    """An escaped value in monospace."""
    return f"<code>{esc(value)}</code>"


def human_bytes(value: int | None) -> str:
    """1536 -> '1.5 kB'; None -> '–'."""
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_seconds(value: float | None) -> str:
    """2.345 -> '2.3 s'; None -> '–'."""
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


# --- generic outcomes ------------------------------------------------------------------------


def refusal(message: str) -> str:
    """A refused request (bad input, permissions, stale buttons)."""
    return f"{FAIL} {esc(message)}"


def failure(message: str) -> str:
    """A request that was allowed but failed (node down, server error)."""
    return f"{FAIL} failed: {esc(message)}"


def internal_error(reference: str) -> str:
    """An unexpected error; the reference id finds the traceback in the log."""
    return f"{FAIL} internal error (ref {esc(reference)}); the details are in the bot's log"


def not_run_offline() -> str:
    """Reply to a command that waited in Telegram's queue while the bot was not running."""
    return f"{FAIL} not run: sent while the bot was offline"


def not_run_forwarded() -> str:
    """Reply to a forwarded command: only what a user types themselves is run."""
    return f"{FAIL} not run: forwarded commands are not accepted; type the command yourself"


def one_line(value: object, limit: int | None = None) -> str:
    """``value`` with all whitespace runs (newlines too) as single spaces, cut at ``limit``."""
    text = " ".join(str(value).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def unknown_command(name: str) -> str:
    """Reply to a command the bot does not have."""
    return f"{FAIL} unknown command /{esc(name)}; see /help"


# --- /status ---------------------------------------------------------------------------------


def status(clusters: Sequence[ClusterStatus]) -> str:
    """The /status reply for the selected clusters."""
    return "\n\n".join(_cluster_status(c) for c in clusters)


def _cluster_status(cluster: ClusterStatus) -> str:
    streaming = sum(1 for r in cluster.replicas if r.state == "streaming")
    total = len(cluster.replicas)
    lines: list[str] = []
    if cluster.primary is None:
        lines.append(
            f"{FAIL} <b>{esc(cluster.cluster)}</b>: primary {esc(cluster.primary_node)} is down"
        )
        lines.append(f"   reason: {esc(cluster.primary_down or 'unknown')}")
    else:
        p = cluster.primary
        icon = OK if streaming == total and not p.in_recovery else WARN
        lines.append(
            f"{icon} <b>{esc(cluster.cluster)}</b>: {streaming}/{total} replicas streaming"
        )
        role_note = " ⚠️ in recovery — not a primary!" if p.in_recovery else ""
        lines.append(
            f"<b>{esc(p.node)}</b> primary · up · PostgreSQL {esc(p.server_version or '?')}"
            f" · timeline {esc(p.timeline if p.timeline is not None else '–')}"
            f" · LSN {code(p.lsn or '–')}{role_note}"
        )
    for replica in cluster.replicas:
        lines.extend(_replica_lines(replica))
    for backup in cluster.backups:
        lines.append(
            f"⏳ base backup running: pid {esc(backup.pid)}"
            f" from {esc(backup.client_addr or 'local')}"
            f" ({esc(backup.state or '?')}, sent {code(backup.sent_lsn or '–')})"
        )
    for sender in cluster.unknown_senders:
        lines.append(
            f"{INFO} unconfigured standby {esc(sender.application_name or '?')}"
            f" from {esc(sender.client_addr or 'local')}: {esc(sender.state or '?')}"
            f", slot {esc(sender.slot_name or '–')}"
        )
    return "\n".join(lines)


def _replica_lines(replica: ReplicaView) -> list[str]:
    icon = {"streaming": OK, "down": FAIL, "absent": FAIL}.get(replica.state, WARN)
    head = f"{icon} <b>{esc(replica.node)}</b> replica · {esc(replica.state)}"
    if replica.slot:
        head += f" · slot {esc(replica.slot)}"
    lines = [head]
    if replica.slotless is not None:
        lines.append(slotless_status_line(replica.slotless))
    if replica.state == "down":
        lines.append(f"   reason: {esc(replica.down_reason or 'unknown')}")
        return lines
    sender = replica.sender
    if sender is not None:
        lines.append(f"   sync {esc(sender.sync_state or '–')} · {_lsns(sender)}")
        lines.append(
            f"   lag {esc(human_bytes(replica.lag_bytes))} · replay lag "
            f"{esc(human_seconds(replica.lag_seconds))}"
        )
    snapshot = replica.receiver
    if snapshot is not None:
        if not snapshot.in_recovery:
            lines.append(f"   {WARN} not in recovery: this node is a primary now")
        receiver = snapshot.receiver
        host = receiver.sender_host if receiver else None
        source = f"{host}:{receiver.sender_port}" if receiver and host else "–"
        lines.append(
            f"   receiver {esc((receiver.status if receiver else None) or 'not running')}"
            f" from {esc(source)}"
            f" · slot {esc((receiver.slot_name if receiver else None) or '–')}"
            f" · flushed {code((receiver.flushed_lsn if receiver else None) or '–')}"
            f" · replay delay {esc(human_seconds(snapshot.replay_delay_s))}"
        )
    return lines


def _lsns(sender: WalSender) -> str:
    parts = (sender.sent_lsn, sender.write_lsn, sender.flush_lsn, sender.replay_lsn)
    return "sent/write/flush/replay " + " / ".join(code(p or "–") for p in parts)


# --- /slots ----------------------------------------------------------------------------------


def slots(clusters: Sequence[ClusterSlots]) -> str:
    """The /slots reply for the selected clusters."""
    return "\n\n".join(_cluster_slots(c) for c in clusters)


def _cluster_slots(cluster: ClusterSlots) -> str:
    title = f"<b>{esc(cluster.cluster)}</b> slots on {esc(cluster.primary_node)}"
    if cluster.error is not None:
        return f"{FAIL} {title}: {esc(cluster.error)}"
    if not cluster.slots:
        return f"{INFO} {title}: none"
    risky = sum(1 for s in cluster.slots if s.at_risk or not s.active)
    icon = OK if risky == 0 else WARN
    lines = [f"{icon} {title}: {len(cluster.slots)} slot(s), {risky} need attention"]
    lines.extend(_slot_line(s) for s in cluster.slots[:MAX_SLOT_LINES])
    if len(cluster.slots) > MAX_SLOT_LINES:
        lines.append(f"… and {len(cluster.slots) - MAX_SLOT_LINES} more slots")
    return "\n".join(lines)


def _slot_line(slot: SlotInfo) -> str:
    icon = FAIL if slot.at_risk else (OK if slot.active else WARN)
    state = "active" if slot.active else "INACTIVE"
    line = (
        f"{icon} <b>{esc(slot.name)}</b> {esc(slot.slot_type)} · {state}"
        f" · restart {code(slot.restart_lsn or '–')}"
        f" · retains {esc(human_bytes(slot.retained_bytes))}"
        f" · wal_status {esc(slot.wal_status or '–')}"
    )
    if slot.safe_wal_size is not None:
        line += f" · safe {esc(human_bytes(slot.safe_wal_size))}"
    if slot.used_by:
        line += f" · for {esc(slot.used_by)}"
    if slot.inactive_since is not None:
        line += f" · inactive since {esc(slot.inactive_since.strftime('%Y-%m-%d %H:%M:%S'))}"
    if slot.invalidation_reason:
        line += f" · invalidated: {esc(slot.invalidation_reason)}"
    if slot.wal_status == "lost":
        line += " · WAL lost: the replica must be rebuilt"
    return line


def slot_created(slot: str, cluster: str, node: str) -> str:
    """Confirmation that a slot was created."""
    return f"{OK} slot {code(slot)} created on {esc(cluster)}/{esc(node)}"


def _approver(second_approver: bool) -> str:
    """Who may press a confirmation button."""
    return "Another admin must approve" if second_approver else "Only you can confirm"


def confirm_drop_slot(
    slot: SlotInfo, cluster: str, node: str, ttl_s: float, second_approver: bool = False
) -> str:
    """The question shown with the drop confirmation buttons."""
    return (
        f"{WARN} Drop slot {code(slot.name)} on {esc(cluster)}/{esc(node)}?\n"
        + (
            f"It is inactive and retains {esc(human_bytes(slot.retained_bytes))} of WAL."
            if slot.retained_bytes is not None
            else "It is inactive and reserves no WAL yet."
        )
        + " A replica using it will need a rebuild.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def slot_dropped(slot: str, cluster: str, node: str) -> str:
    """Confirmation that a slot was dropped."""
    return f"{OK} slot {code(slot)} dropped on {esc(cluster)}/{esc(node)}"


def cancelled(what: str) -> str:
    """A confirmation the user withdrew."""
    return f"{INFO} cancelled: {esc(what)}"


# --- /check ----------------------------------------------------------------------------------


def check(clusters: Sequence[ClusterCheck]) -> str:
    """The /check reply: one line per prerequisite with its fix."""
    blocks = []
    for cluster in clusters:
        counts = {level: sum(1 for i in cluster.items if i.level is level) for level in CheckLevel}
        lines = [
            f"{_LEVEL_ICON[cluster.worst]} <b>{esc(cluster.cluster)}</b> prerequisites: "
            f"{counts[CheckLevel.OK]} ok, {counts[CheckLevel.WARN]} warn, "
            f"{counts[CheckLevel.FAIL]} fail"
        ]
        for item in cluster.items:
            line = (
                f"{_LEVEL_ICON[item.level]} {esc(item.node)} · {esc(item.name)}: {esc(item.detail)}"
            )
            if item.fix and item.level is not CheckLevel.OK:
                line += f" → {esc(item.fix)}"
            lines.append(line)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# --- /audit, /help, /whoami -------------------------------------------------------------------


def audit(entries: Sequence[AuditEntry]) -> str:
    """The newest audit rows, newest first; one line each whatever they hold, at most
    MAX_AUDIT_LINES of them."""
    if not entries:
        return f"{INFO} the audit log is empty"
    icon = {Outcome.OK: OK, Outcome.REFUSED: WARN, Outcome.FAILED: FAIL, Outcome.INTENT: INFO}
    lines = [f"{INFO} last {len(entries)} audit entries, newest first"]
    for e in entries[:MAX_AUDIT_LINES]:
        command = one_line(e.command, AUDIT_FIELD_CHARS)
        args = one_line(e.args, AUDIT_FIELD_CHARS)
        reason = one_line(e.reason, AUDIT_FIELD_CHARS)
        lines.append(
            f"{icon[e.outcome]} #{e.id} {esc(e.at.strftime('%m-%d %H:%M:%S'))} "
            f"{esc(one_line(e.user_name, 64))} "
            f"({esc(e.user_id if e.user_id is not None else '?')}) "
            f"{code('/' + command + (' ' + args if args else ''))} {esc(e.outcome.value)}"
            f"{esc(' — ' + reason if reason else '')} · {e.duration_ms} ms"
        )
    if len(entries) > MAX_AUDIT_LINES:
        lines.append(
            f"… and {len(entries) - MAX_AUDIT_LINES} more entries (ask for fewer with /audit N)"
        )
    return "\n".join(lines)


def audit_verification(result: AuditVerification) -> str:
    """Outcome of ``replbot audit verify`` (plain text is fine: no markup needed)."""
    unkeyed = (
        f"\nwarning: rows 1-{result.unkeyed_rows} carry no key (written before the audit key, "
        "or rewritten by someone without it); only an anchor taken earlier vouches for them"
        if result.unkeyed_rows
        else ""
    )
    if result.ok:
        head = (
            f"\nhead {result.head} (keep it elsewhere; check with --expect-head {result.head})"
            if result.head is not None
            else ""
        )
        return f"audit log ok: {result.rows} rows, hash chain intact{unkeyed}{head}"
    return f"audit log TAMPERED at row {result.first_bad_id}: {result.problem}{unkeyed}"


def help_text(user: User, commands: Iterable[tuple[str, str, str]]) -> str:
    """The commands this user may run: (usage, summary, minimum role)."""
    role = user.role.label if user.role else "none"
    lines = [f"{INFO} commands for {esc(user.name)} ({esc(role)}):"]
    lines.extend(f"{code(usage)} — {esc(summary)}" for usage, summary, _ in commands)
    return "\n".join(lines)


def whoami(user: User, chat_id: int) -> str:
    """The caller's id, name and role."""
    role = user.role.label if user.role else "none (not allowed)"
    return (
        f"{INFO} you are {esc(user.name)}, id {code(user.id)}, role <b>{esc(role)}</b>;"
        f" chat {code(chat_id)}"
    )


# --- splitting -------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]*>")


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split HTML ``text`` at line boundaries into chunks of at most ``limit`` characters.

    Every chunk is well-formed on its own, whatever the text holds: a tag still open where a
    chunk ends is closed there and opened again at the start of the next chunk. A line that
    does not fit in a chunk of its own (longer than ``limit``, with the reopened tags) loses its
    markup and is cut between characters, never inside an HTML entity, into chunks of its own.
    """
    chunks: list[str] = []
    reopened: list[str] = []  # start tags open at the beginning of the current chunk
    stack: list[str] = []  # start tags open after the current chunk's body
    body: str | None = None
    for line in text.split("\n"):
        after = _open_tags_after(stack, line)
        if body is not None:
            candidate = body + "\n" + line
            if len(_wrap(reopened, candidate, after)) <= limit:
                body, stack = candidate, after
                continue
            chunks.append(_wrap(reopened, body, stack))
        if len(_wrap(stack, line, after)) <= limit:
            reopened, body, stack = stack, line, after
        else:
            chunks.extend(_cut_long_line(line, limit))
            reopened, body, stack = after, None, after
    if body is not None or not chunks:
        chunks.append(_wrap(reopened, body or "", stack))
    return chunks


def _cut_long_line(line: str, limit: int) -> list[str]:
    plain = html.unescape(_TAG.sub("", line))
    pieces: list[str] = []
    current = ""
    for char in plain:
        escaped = esc(char)
        if len(current) + len(escaped) > limit:
            pieces.append(current)
            current = ""
        current += escaped
    if current:
        pieces.append(current)
    return pieces


_TAG_NAME = re.compile(r"^<(/?)\s*([A-Za-z][A-Za-z0-9-]*)")


def _open_tags_after(stack: list[str], html_text: str) -> list[str]:
    """The start tags still open after ``html_text``, given those open before it."""
    opened = list(stack)
    for tag in _TAG.findall(html_text):
        match = _TAG_NAME.match(tag)
        if match is None:
            continue
        if not match.group(1):
            opened.append(tag)
            continue
        name = match.group(2).lower()
        for depth in range(len(opened) - 1, -1, -1):
            if _tag_name(opened[depth]) == name:
                del opened[depth]
                break
    return opened


def _tag_name(start_tag: str) -> str:
    match = _TAG_NAME.match(start_tag)
    return match.group(2).lower() if match is not None else ""


def _wrap(reopened: list[str], body: str, still_open: list[str]) -> str:
    """A chunk: the tags open before it, its body, and end tags for what is still open."""
    closing = "".join(f"</{_tag_name(tag)}>" for tag in reversed(still_open))
    return "".join(reopened) + body + closing


def to_plain_text(text: str) -> str:
    """Telegram HTML -> plain text, for the console transport."""
    return html.unescape(_TAG.sub("", text))


# --- /rebuild --------------------------------------------------------------------------------


def _expiry(ttl_s: float, who: str = "Only you can confirm") -> str:
    """The last line of every confirmation question."""
    return f"{who}; the button expires in {ttl_s:.0f} s."


def _recovery_hint(node: str) -> str:
    """How to leave an interrupted or failed rollback: roll back, or release the lock."""
    return (
        f"Roll back with {code('/rebuild ' + node + ' --rollback')}; after fixing it by hand, "
        f"release the lock with {code('/rebuild ' + node + ' --abandon')}."
    )


def rebuild_preflight(report: PreflightReport) -> str:
    """The preflight checks, failures first in the headline."""
    fails = [i for i in report.items if i.level is CheckLevel.FAIL]
    if fails:
        head = f"{FAIL} rebuild of {esc(report.node)} refused: {esc(fails[0].detail)}" + (
            f" (and {len(fails) - 1} more)" if len(fails) > 1 else ""
        )
    else:
        head = f"{OK} preflight of {esc(report.node)} passed"
    lines = [head]
    for item in report.items:
        line = f"{_LEVEL_ICON[item.level]} {esc(item.name)}: {esc(item.detail)}"
        if item.fix and item.level is not CheckLevel.OK:
            line += f" → {esc(item.fix)}"
        lines.append(line)
    return "\n".join(lines)


def rebuild_plan(plan: RebuildPlan) -> str:
    """Every step, with the exact SQL or shell command."""
    lines = [f"<b>plan for {esc(plan.cluster)}/{esc(plan.node)}</b> on {esc(plan.host)}:"]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step.title)} [{esc(action_kind(step.action))}]")
        lines.append(f"   {code(describe(step.action))}")
    return "\n".join(lines)


def rebuild_dry_run(report: PreflightReport, plan: RebuildPlan) -> str:
    """The reply of --dry-run: checks, then the plan; nothing was changed."""
    return (
        f"{INFO} dry run: nothing was changed\n"
        + rebuild_preflight(report)
        + "\n\n"
        + rebuild_plan(plan)
    )


def rebuild_plan_changed(plan: RebuildPlan) -> str:
    """The plan computed at the press differs from the one approved: nothing runs."""
    return (
        f"{FAIL} rebuild of {esc(plan.node)} not started: the plan changed since it was shown "
        f"(the node's state moved on). This is the plan now; run {code(f'/rebuild {plan.node}')} "
        "again to approve it.\n\n" + rebuild_plan(plan)
    )


def rebuild_confirm(plan: RebuildPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the rebuild confirmation button."""
    who = _approver(second_approver)
    return (
        f"{WARN} <b>Replace the data of {esc(plan.node)}</b> on {esc(plan.host)}?\n"
        f"{code(plan.data_dir)} will be moved to {code(plan.old_dir)} (kept, not deleted) and "
        f"rebuilt from the primary with pg_basebackup (slot {code(plan.slot)}).\n"
        + _expiry(ttl_s, who)
    )


def rebuild_confirmed(plan: RebuildPlan, by: str) -> str:
    """The confirmation message once pressed (its buttons are removed)."""
    return (
        f"{OK} rebuild of <b>{esc(plan.node)}</b> on {esc(plan.host)} confirmed by {esc(by)}; "
        f"{code(plan.data_dir)} → {code(plan.old_dir)}"
    )


_STATE_ICON = {
    RebuildState.RUNNING: "⏳",
    RebuildState.SUCCEEDED: OK,
    RebuildState.ROLLED_BACK: FAIL,
    RebuildState.ROLLBACK_FAILED: "🆘",
    RebuildState.INTERRUPTED: WARN,
    RebuildState.ABANDONED: INFO,
}


def rebuild_progress(progress: RebuildProgress) -> str:
    """The live message of a running rebuild (edited in place)."""
    icon = _STATE_ICON[progress.state]
    title = {
        RebuildState.RUNNING: "rebuilding",
        RebuildState.SUCCEEDED: "rebuilt",
        RebuildState.ROLLED_BACK: "rebuild failed, rolled back:",
        RebuildState.ROLLBACK_FAILED: "rebuild failed and ROLLBACK FAILED:",
        RebuildState.INTERRUPTED: "rebuild interrupted:",
        RebuildState.ABANDONED: "rebuild abandoned:",
    }[progress.state]
    lines = [
        f"{icon} {title} <b>{esc(progress.cluster)}/{esc(progress.node)}</b> "
        f"(job {progress.job_id}, {esc(human_seconds(progress.elapsed_s))})"
    ]
    if progress.state is RebuildState.RUNNING:
        count = f" {progress.step_index}/{progress.step_count}" if progress.step_count else ""
        lines.append(f"step{count}: {esc(progress.detail or progress.step)}")
        if progress.backup is not None and progress.step == "basebackup":
            b = progress.backup
            line = (
                f"{_bar(b.percent)} {b.percent} % · {esc(human_bytes(b.done_kb * 1024))} of "
                f"{esc(human_bytes(b.total_kb * 1024))}"
            )
            if progress.rate_bytes_s:
                line += f" · {esc(human_bytes(int(progress.rate_bytes_s)))}/s"
            if progress.eta_s is not None:
                line += f" · ETA {esc(human_seconds(progress.eta_s))}"
            lines.append(line)
    else:
        lines.append(esc(progress.detail))
        if progress.output:
            lines.extend(f"   {code(line)}" for line in progress.output.splitlines()[-12:])
        if progress.state is RebuildState.SUCCEEDED and progress.old_dir:
            lines.append(
                f"Old data kept in {code(progress.old_dir)}; remove it with "
                f"{code('/rebuild ' + progress.node + ' --cleanup')} once you are satisfied."
            )
        if progress.state in {RebuildState.INTERRUPTED, RebuildState.ROLLBACK_FAILED}:
            lines.append(_recovery_hint(progress.node))
    return "\n".join(lines)


def _bar(percent: int, width: int = 10) -> str:
    filled = max(0, min(width, round(percent * width / 100)))
    return "▓" * filled + "░" * (width - filled)


def rebuild_started(job: RebuildJob) -> str:
    """First text of the progress message."""
    return f"⏳ rebuild of <b>{esc(job.cluster)}/{esc(job.node)}</b> started (job {job.id})"


def rebuild_busy_reason(job: RebuildJob, progress: RebuildProgress | None) -> str:
    """Why a second /rebuild is refused (plain text: the dispatcher escapes refusals)."""
    where = job.step
    if progress is not None and progress.backup is not None and progress.step == "basebackup":
        where = f"basebackup {progress.backup.percent} %"
    return (
        f"rebuild of {job.node} refused: already in progress "
        f"(job {job.id}, {job.state.value}, {where})"
    )


def rebuild_rollback_started(node: str) -> str:
    """First text of the progress message of --rollback."""
    return f"⏳ rolling back the rebuild of {esc(node)}"


def rebuild_interrupted(job: RebuildJob, inspection: str) -> str:
    """Told to the admins at start-up when a job was left unfinished."""
    return (
        f"{WARN} replbot restarted while rebuilding <b>{esc(job.cluster)}/{esc(job.node)}</b> "
        f"(job {job.id}). The node stays locked.\n"
        f"{esc(inspection)}\n"
        f"Old data (if moved): {code(job.old_dir)}\n" + _recovery_hint(job.node)
    )


def rebuild_cancel_requested(node: str) -> str:
    """Reply to --cancel."""
    return f"{WARN} cancelling the rebuild of {esc(node)}: stopping pg_basebackup and rolling back"


def rebuild_abandoned(job: RebuildJob) -> str:
    """Reply to --abandon."""
    return f"{INFO} lock of {esc(job.node)} released (job {job.id} abandoned)"


def confirm_cleanup(job: RebuildJob, ttl_s: float, second_approver: bool = False) -> str:
    """The question before deleting the old data directory."""
    return (
        f"{WARN} <b>Delete</b> {code(job.old_dir)} on {esc(job.node)}? It is the data kept from "
        f"before rebuild job {job.id}; this cannot be undone.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def confirm_rollback(job: RebuildJob, ttl_s: float, second_approver: bool) -> str:
    """The question before rolling back an interrupted rebuild."""
    return (
        f"{WARN} <b>Roll back</b> rebuild job {job.id} of {esc(job.cluster)}/{esc(job.node)} "
        f"({esc(job.state.value)}, step {esc(job.step)})? The old data directory "
        f"{code(job.old_dir)} is moved back and the replica restarted.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def confirm_abandon(job: RebuildJob, ttl_s: float, second_approver: bool) -> str:
    """The question before releasing the lock of an interrupted rebuild."""
    return (
        f"{WARN} <b>Abandon</b> rebuild job {job.id} of {esc(job.cluster)}/{esc(job.node)} "
        f"({esc(job.state.value)}, step {esc(job.step)}) and release the node's lock? Only do "
        f"this after fixing the node by hand; nothing on it is changed.\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def rebuild_job_changed(node: str, job_id: str) -> str:
    """Refusal when the job a rollback/abandon button named no longer holds the lock."""
    return f"the rebuild job of {node} changed since job {job_id} was shown; run the command again"


def cleanup_done(node: str, path: str) -> str:
    """After the old data directory was removed."""
    return f"{OK} removed {code(path)} on {esc(node)}"


# --- alerts ----------------------------------------------------------------------------------

_SEVERITY_ICON = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠"}
MUTED_ICON, ACK_ICON, REPEAT_ICON, CHANGE_ICON, ALARM_ICON = "🔕", "👍", "🔁", "🔄", "🚨"


def _number(alert: Alert, name: str) -> float | None:
    value = alert.figures.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bytes_figure(alert: Alert, name: str) -> str:
    value = _number(alert, name)
    return human_bytes(int(value)) if value is not None else "–"


def _seconds_figure(alert: Alert, name: str) -> str:
    return human_seconds(_number(alert, name))


def alert_where(alert: Alert) -> str:
    """'main/pg2', or just 'main' for cluster-wide alerts."""
    return f"{alert.cluster}/{alert.node}" if alert.node else alert.cluster


def alert_headline(alert: Alert) -> str:
    """What is wrong, in one escaped line."""
    node, slot, f = esc(alert.node), code(alert.subject), alert.figures
    rule = alert.rule
    if rule is AlertRule.SLOTLESS_WAL:
        return slotless_alert_headline(alert)
    if rule is AlertRule.NODE_DOWN:
        return f"{node} ({esc(f.get('role') or 'node')}) is down"
    if rule is AlertRule.CLUSTER_UNREACHABLE:
        return f"cannot reach any node of cluster {esc(alert.cluster)}"
    if rule is AlertRule.NOT_STREAMING:
        return f"replica {node} is not streaming"
    if rule is AlertRule.BYTE_LAG:
        return f"replica {node} is {esc(_bytes_figure(alert, 'lag_bytes'))} behind the primary"
    if rule is AlertRule.TIME_LAG:
        return f"replica {node} replays {esc(_seconds_figure(alert, 'lag_s'))} behind"
    if rule is AlertRule.SLOT_INACTIVE:
        return f"slot {slot} on {node} is inactive"
    if rule is AlertRule.SLOT_RETAINED:
        return f"slot {slot} keeps {esc(_bytes_figure(alert, 'retained'))} of WAL on {node}"
    if rule is AlertRule.SLOT_AT_RISK:
        if f.get("lost"):
            return f"slot {slot} on {node} lost WAL its replica needs"
        if f.get("wal_status") == "unreserved":
            return f"slot {slot} on {node}: WAL it needs is about to be removed"
        return f"slot {slot} on {node} keeps WAL beyond max_wal_size"
    if rule is AlertRule.ROLE_MISMATCH:
        return (
            f"{node} runs as {esc(f.get('actual') or '?')} but is configured as "
            f"{esc(f.get('configured') or '?')}"
        )
    if rule is AlertRule.ROLE_CHANGE:
        return f"{node} changed from {esc(f.get('was') or '?')} to {esc(f.get('now') or '?')}"
    return f"{node} moved from timeline {esc(f.get('was') or '?')} to {esc(f.get('now') or '?')}"


def _alert_details(alert: Alert) -> list[str]:
    """The key figures (escaped)."""
    rule, f = alert.rule, alert.figures
    if rule is AlertRule.SLOTLESS_WAL:
        return slotless_alert_details(alert)
    if rule in {AlertRule.NODE_DOWN, AlertRule.CLUSTER_UNREACHABLE}:
        return [f"reason: {esc(f.get('reason') or 'unknown')}"]
    if rule is AlertRule.NOT_STREAMING:
        return [
            esc(f.get("reason") or ""),
            f"walsender {esc(f.get('walsender') or '?')} · WAL receiver "
            f"{esc(f.get('receiver') or '?')} · slot {esc(f.get('slot') or '–')}",
        ]
    if rule is AlertRule.BYTE_LAG:
        return [
            f"replay LSN {code(f.get('replay_lsn') or '–')} · warning at "
            f"{esc(_bytes_figure(alert, 'warning'))}, critical at "
            f"{esc(_bytes_figure(alert, 'critical'))}"
        ]
    if rule is AlertRule.TIME_LAG:
        return [
            f"warning at {esc(_seconds_figure(alert, 'warning'))}, critical at "
            f"{esc(_seconds_figure(alert, 'critical'))}"
        ]
    line = (
        f"retains {esc(_bytes_figure(alert, 'retained'))} · wal_status "
        f"{esc(f.get('wal_status') or '–')}"
    )
    if f.get("used_by"):
        line += f" · used by replica {esc(f.get('used_by'))}"
    lines = [line]
    if rule is AlertRule.SLOT_RETAINED:
        rate = _number(alert, "rate")
        if rate is not None and rate > 0:
            growth = f"growing {esc(human_bytes(int(rate)))}/s"
            if _number(alert, "eta_lost_s") is not None:
                growth += (
                    f"; its WAL is removed (wal_status lost) in about "
                    f"{esc(_seconds_figure(alert, 'eta_lost_s'))}"
                    f" (safe_wal_size {esc(_bytes_figure(alert, 'safe_wal_size'))})"
                )
            lines.append(growth)
        lines.append(
            f"warning at {esc(_bytes_figure(alert, 'warning'))}, critical at "
            f"{esc(_bytes_figure(alert, 'critical'))}"
        )
    if rule is AlertRule.SLOT_AT_RISK and f.get("invalidation_reason"):
        lines.append(f"invalidated: {esc(f.get('invalidation_reason'))}")
    return lines


def _alert_hint(alert: Alert) -> str:
    """What to do (escaped)."""
    rule, f = alert.rule, alert.figures
    if rule is AlertRule.SLOTLESS_WAL:
        return slotless_alert_hint(alert)
    status = code(f"/status {alert.cluster}")
    job = f.get("rebuild_job")
    if job is not None and rule in {AlertRule.NODE_DOWN, AlertRule.NOT_STREAMING}:
        return (
            f"replbot is rebuilding or repairing {esc(alert.node)} (job {esc(job)}): expected "
            f"until it streams again; it turns critical if not; {status}"
        )
    if rule is AlertRule.NODE_DOWN:
        return f"check that {esc(alert.node)} runs and accepts connections; {status}"
    if rule is AlertRule.CLUSTER_UNREACHABLE:
        return (
            "when every node fails at once, suspect the bot's own network, DNS or credentials; "
            "this is said once, not repeated"
        )
    if rule is AlertRule.NOT_STREAMING:
        if f.get("basebackup"):
            return f"a pg_basebackup holds slot {esc(f.get('slot'))}: a rebuild is probably running"
        return (
            f"check that {esc(alert.node)} runs and reaches the primary "
            f"(its server log says why); {status}"
        )
    if rule in {AlertRule.BYTE_LAG, AlertRule.TIME_LAG}:
        return f"long queries, I/O or the network slow {esc(alert.node)} down; watch {status}"
    user = f.get("used_by")
    if rule is AlertRule.SLOT_AT_RISK and f.get("lost"):
        if user:
            return f"replica {esc(user)} must be rebuilt: {code(f'/rebuild {user}')}"
        return f"nothing can resume from it: {code(f'/dropslot {alert.subject}')}"
    if rule is AlertRule.SLOT_AT_RISK and f.get("wal_status") == "unreserved":
        return "its replica must catch up now or be rebuilt; max_slot_wal_keep_size buys time"
    if rule in {AlertRule.SLOT_INACTIVE, AlertRule.SLOT_RETAINED, AlertRule.SLOT_AT_RISK}:
        if user:
            return (
                f"the primary's disk fills with WAL until replica {esc(user)} streams again; "
                f"start it, or rebuild it: {code(f'/rebuild {user}')}"
            )
        return (
            "the primary's disk fills with WAL; if nothing uses the slot any more: "
            f"{code(f'/dropslot {alert.subject}')}"
        )
    if rule is AlertRule.ROLE_MISMATCH:
        return f"after a failover, update the bot's config; otherwise check the node: {status}"
    if rule is AlertRule.ROLE_CHANGE:
        return f"a promotion or a demotion happened: {status}"
    return "a promotion happened; replicas must follow the new timeline or be rebuilt"


def alert_notice(notice: AlertNotice) -> str:
    """One alert in a message: headline, key figures, what to do."""
    alert = notice.alert
    where = f"<b>{esc(alert_where(alert))}</b>"
    icon = _SEVERITY_ICON[alert.severity]
    level = alert.severity.value.upper()
    headline = alert_headline(alert)
    if notice.kind is NoticeKind.RESOLVED:
        lasted = (alert.resolved_at or notice.at) - alert.first_seen
        return (
            f"{OK} <b>RESOLVED</b> {where}: {headline}\n"
            f"   lasted {esc(human_duration(lasted))} · alert #{alert.id}"
        )
    if notice.kind is NoticeKind.EVENT:
        return f"{CHANGE_ICON} {icon} {where}: {headline}\n   → {_alert_hint(alert)}"
    if notice.kind is NoticeKind.REPEAT:
        head = f"{REPEAT_ICON} still firing · {icon} <b>{level}</b> {where}: {headline}"
    elif notice.kind is NoticeKind.ESCALATED:
        head = f"{icon} now <b>{level}</b> {where}: {headline}"
    else:
        head = f"{icon} <b>{level}</b> {where}: {headline}"
    lines = [head]
    lines.extend(f"   {line}" for line in _alert_details(alert) if line)
    lines.append(f"   → {_alert_hint(alert)}")
    age = notice.at - alert.first_seen
    lines.append(
        f"   alert #{alert.id}" + (f" · for {esc(human_duration(age))}" if age >= 1 else "")
    )
    return "\n".join(lines)


def alert_header(notices: Sequence[AlertNotice]) -> str:
    """The first line of a message that groups several notices."""
    resolved = sum(1 for n in notices if n.kind is NoticeKind.RESOLVED)
    firing = len(notices) - resolved
    parts = []
    if firing:
        parts.append(f"{firing} alert(s)")
    if resolved:
        parts.append(f"{resolved} resolved")
    clusters = ", ".join(sorted({n.alert.cluster for n in notices}))
    return f"{ALARM_ICON} {' and '.join(parts)} · {esc(clusters)}"


def human_duration(seconds: float) -> str:
    """3600 -> '1 h', 5400 -> '1 h 30 min', 90 -> '1 min 30 s', 2.5 -> '2.5 s'."""
    if seconds < 60:
        return (
            f"{seconds:.1f} s" if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f} s"
        )
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2])


def alert_button_labels(alert: Alert, mute_s: float) -> tuple[str, str]:
    """Labels of the Acknowledge and Mute buttons of an alert (plain text)."""
    return f"{ACK_ICON} Ack #{alert.id}", f"{MUTED_ICON} Mute {human_duration(mute_s)} #{alert.id}"


def alerts_firing(alerts: Sequence[Alert], mutes: Sequence[Mute], now: float) -> str:
    """The /alerts reply: what fires, acknowledged or muted, and the mutes in force."""
    if alerts:
        lines = [f"{ALARM_ICON} {len(alerts)} alert(s) firing"]
    else:
        lines = [f"{OK} no alerts firing"]
    for alert in alerts:
        line = (
            f"{_SEVERITY_ICON[alert.severity]} #{alert.id} <b>{esc(alert_where(alert))}</b>: "
            f"{alert_headline(alert)} · for {esc(human_duration(now - alert.first_seen))}"
        )
        if alert.acked_by:
            line += f" · {ACK_ICON} {esc(alert.acked_by)}"
        if alert.muted_until is not None and alert.muted_until > now:
            line += f" · {MUTED_ICON} {esc(human_duration(alert.muted_until - now))}"
        lines.append(line)
    for mute in mutes:
        target = f"{mute.cluster}/{mute.node}" if mute.node else f"cluster {mute.cluster}"
        lines.append(
            f"{MUTED_ICON} muted: {esc(target)} for {esc(human_duration(mute.until - now))} more"
            f" (by {esc(mute.by)})"
        )
    return "\n".join(lines)


def alert_acknowledged(alert: Alert) -> str:
    """Reply to the Acknowledge button."""
    return (
        f"{ACK_ICON} alert #{alert.id} ({esc(alert_where(alert))}: {alert_headline(alert)}) "
        f"acknowledged by {esc(alert.acked_by or '?')}: no more repeats; "
        "its resolution will still be announced"
    )


def alert_muted(alert: Alert, now: float) -> str:
    """Reply to the Mute button."""
    left = (alert.muted_until or now) - now
    return (
        f"{MUTED_ICON} alert #{alert.id} ({esc(alert_where(alert))}: {alert_headline(alert)}) "
        f"muted for {esc(human_duration(left))}: no repeats and no resolved message until then"
    )


def target_muted(cluster: str, node: str | None, duration_s: float) -> str:
    """Reply to /mute."""
    target = f"{cluster}/{node}" if node else f"cluster {cluster}"
    return (
        f"{MUTED_ICON} muted {esc(target)} for {esc(human_duration(duration_s))}: its alerts are "
        "still recorded (see /alerts) but not announced"
    )


def target_unmuted(cluster: str, node: str | None, ended: int) -> str:
    """Reply to /unmute."""
    target = f"{cluster}/{node}" if node else f"cluster {cluster}"
    if ended == 0:
        return f"{INFO} {esc(target)} was not muted"
    return f"🔔 unmuted {esc(target)} ({ended} mute(s) ended)"


def alerts_unavailable() -> str:
    """/alerts, /mute, /unmute when the bot runs without a monitor."""
    return f"{INFO} the alert monitor is not part of this bot"


def alert_chat_refusing(chat_id: int, reason: str, fallback: int | None) -> str:
    """Notice to the other alert chats (once per chat) that ``chat_id`` refuses the bot."""
    where = (
        f"its alerts go to chat {code(fallback)} instead"
        if fallback is not None
        else "its alerts are not delivered (no telegram.alert_fallback_chat_id)"
    )
    return (
        f"{FAIL} <b>alert chat {code(chat_id)} refuses the bot</b>: {esc(reason)}\n"
        f"   → {where}; add the bot to that chat again, or change alert_chat_ids"
    )


def alert_redirected(chat_id: int) -> str:
    """First line of an alert message re-sent to the fallback chat."""
    return f"↪️ meant for alert chat {code(chat_id)}, which refuses the bot:"


def demo_replica_changed(node: str, stopped: bool, interval_s: float) -> str:
    """Reply of the demo's /demo stop-replica and start-replica."""
    if stopped:
        return (
            f"{WARN} demo replica {esc(node)} stopped; the monitor polls every "
            f"{esc(human_duration(interval_s))} and will say so here"
        )
    return f"{OK} demo replica {esc(node)} started; the alert resolves once it streams again"


def demo_replica_diverged(node: str, rows: int, timeline: int) -> str:
    """Reply of the demo's /demo diverge-replica."""
    return (
        f"{WARN} demo replica {esc(node)} promoted (timeline {timeline}) and "
        + f"{rows} row{'' if rows == 1 else 's'} written on it"
        + f": it diverged from the primary; /repair {esc(node)} can rewind it"
    )


def demo_waited(seconds: int) -> str:
    """Reply of the demo's /demo wait N."""
    return f"{INFO} waited {seconds} s"


# --- button labels and toasts (plain text) ---------------------------------------------------

BUTTON_CANCEL = "Cancel"
BUTTON_DELETE_OLD_DATA = "Delete old data"
TOAST_CONFIRMED = "confirmed"
TOAST_CANCELLED = "cancelled"


def button_rebuild(node: str) -> str:
    """Label of the button confirming a rebuild."""
    return f"Rebuild {node}"


def button_rollback(node: str) -> str:
    """Label of the button confirming a rollback."""
    return f"Roll back {node}"


def button_release(node: str) -> str:
    """Label of the button confirming an abandon (the node's lock is released)."""
    return f"Release {node}"


def button_drop_slot(slot: str) -> str:
    """Label of the button confirming a slot drop."""
    return f"Drop {slot}"


def rebuild_nothing_to_resolve(node: str, mode: str) -> str:
    """Refusal of --rollback / --abandon when no interrupted rebuild holds the node's lock."""
    verb = "roll back" if mode == "rollback" else "abandon"
    return f"no interrupted rebuild of {node} to {verb}"


def toast_alert_acknowledged(alert_id: int) -> str:
    """Toast answering an Ack button."""
    return f"alert #{alert_id} acknowledged"


def toast_alert_muted(alert_id: int) -> str:
    """Toast answering a Mute button."""
    return f"alert #{alert_id} muted"


# === replicas without a slot (issue 12) ===========================================================
# /status mark, the slotless_wal alert, /attachslot and /detachslot. Kept together at the end.


def slotless_status_line(risk: SlotlessRisk) -> str:
    """The /status line under a replica that no slot protects."""
    if risk.lost:
        return (
            f"   {FAIL} no slot, and the WAL it needs from {code(risk.replay_lsn or '–')} is gone "
            f"from the primary: {code('/rebuild ' + risk.node)}"
        )
    if risk.margin_bytes is not None and risk.kept_bytes is not None:
        where = (
            f"{esc(human_bytes(risk.margin_bytes))} ahead of the oldest WAL the primary keeps "
            f"({esc(human_bytes(risk.kept_bytes))}, segment {code(risk.oldest_segment or '–')})"
        )
    elif risk.waldir_readable is False:
        where = "oldest WAL on the primary unknown (the bot's role may not call pg_ls_waldir())"
    else:
        where = "distance to the oldest WAL on the primary unknown"
    return f"   {WARN} no slot: {where} → {code('/attachslot ' + risk.node)}"


def slotless_alert_headline(alert: Alert) -> str:
    """Headline of a slotless_wal alert."""
    node = esc(alert.node)
    if alert.severity is Severity.CRITICAL:
        return f"replica {node} (no slot) needs WAL the primary has already removed"
    return (
        f"replica {node} (no slot) is only {esc(_bytes_figure(alert, 'margin'))} ahead of the "
        "oldest WAL the primary keeps"
    )


def slotless_alert_details(alert: Alert) -> list[str]:
    """Key figures of a slotless_wal alert."""
    f = alert.figures
    connected = "connected" if f.get("connected") else "not connected (last known position)"
    return [
        f"position {code(f.get('position') or '–')} · oldest WAL segment "
        f"{code(f.get('oldest_segment') or '–')} · primary keeps "
        f"{esc(_bytes_figure(alert, 'kept'))} · {connected}",
        f"wal_keep_size {esc(_bytes_figure(alert, 'wal_keep_size'))} · archive_mode "
        f"{esc(f.get('archive_mode') or '?')} · warning below "
        f"{esc(f.get('margin_pct'))} % of the WAL kept",
    ]


def slotless_alert_hint(alert: Alert) -> str:
    """What to do about a slotless_wal alert."""
    node = alert.node
    if alert.severity is Severity.CRITICAL:
        return f"it can no longer catch up by streaming: {code('/rebuild ' + node)}"
    return (
        f"let it catch up now, then give it a slot: {code('/attachslot ' + node)} "
        "(the primary then keeps its WAL)"
    )


def slot_change_plan(planned: SlotPlan) -> str:
    """Every step of an /attachslot or /detachslot plan, with the exact SQL."""
    plan = planned.plan
    lines = [f"<b>plan for {esc(plan.cluster)}/{esc(plan.node)}</b> (primary {esc(plan.host)}):"]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step.title)}")
        lines.append(f"   {code(describe(step.action))}")
    return "\n".join(lines)


def _attach_risk(planned: SlotPlan) -> str:
    risk = planned.risk
    if risk is None or risk.margin_bytes is None or risk.kept_bytes is None:
        return ""
    return (
        f"Now it is {esc(human_bytes(risk.margin_bytes))} ahead of the oldest WAL the primary "
        f"keeps ({esc(human_bytes(risk.kept_bytes))}).\n"
    )


def attachslot_dry_run(planned: SlotPlan) -> str:
    """/attachslot --dry-run: the plan; nothing was changed."""
    return (
        f"{INFO} dry run: nothing was changed\n" + _attach_risk(planned) + slot_change_plan(planned)
    )


def attachslot_confirm(planned: SlotPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the /attachslot confirmation button."""
    plan = planned.plan
    return (
        f"{WARN} <b>Give {esc(plan.node)} the slot {code(planned.slot)}</b> on {esc(plan.host)}?\n"
        "The primary will then keep WAL until the replica has it (and for as long as the slot "
        "exists: /detachslot a replica you retire).\n"
        + _attach_risk(planned)
        + slot_change_plan(planned)
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def detachslot_confirm(planned: SlotPlan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the /detachslot confirmation button."""
    plan = planned.plan
    return (
        f"{WARN} <b>Take slot {code(planned.slot)} away from {esc(plan.node)}</b> and drop it "
        f"on {esc(plan.host)}?\nThe replica then streams without a slot: the primary no longer "
        "keeps WAL for it.\n"
        + slot_change_plan(planned)
        + "\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def slot_change_confirmed(planned: SlotPlan, by: str) -> str:
    """The confirmation message once pressed (its buttons are removed)."""
    plan = planned.plan
    return f"{INFO} /{esc(plan.kind)} {esc(plan.node)} confirmed by {esc(by)}; running…"


def slot_change_outcome(outcome: SlotChangeOutcome) -> str:
    """What /attachslot or /detachslot did, outcome first."""
    where = f"{esc(outcome.cluster)}/{esc(outcome.node)}"
    slot = code(outcome.slot)
    config_line = 'slot = "' + outcome.slot + '"'
    if outcome.ok and outcome.kind == "attachslot" and "edit_auto_conf" in outcome.done:
        text = (
            f"{OK} slot {slot} created for {where}, which is stopped: primary_slot_name is set "
            "in its postgresql.auto.conf (the original is kept beside it), so it streams "
            "through the slot once started. The slot keeps WAL from now on; what the replica "
            "needs from before may already be gone (/status shows it once it runs)."
        )
        if not outcome.in_config:
            text += (
                f"\nAdd {code(config_line)} to {esc(outcome.node)} in the config; until then "
                "the bot remembers it only until it restarts."
            )
        return text
    if outcome.ok and outcome.kind == "attachslot":
        text = (
            f"{OK} {where} streams through slot {slot}: the primary's walsender for it holds "
            "the slot, and its WAL receiver uses it."
        )
        if not outcome.in_config:
            text += (
                f"\nAdd {code(config_line)} to {esc(outcome.node)} in the "
                "config; until then the bot remembers it only until it restarts."
            )
        return text
    if outcome.ok:
        text = f"{OK} slot {slot} dropped; {where} streams without a slot."
        if outcome.in_config:
            text += (
                f"\nRemove {code(config_line)} from {esc(outcome.node)} in the "
                "config; until then the bot remembers it only until it restarts."
            )
        return text
    lines = [
        f"{FAIL} /{esc(outcome.kind)} {where} failed at {code(outcome.failed_step or '?')}: "
        f"{esc(outcome.error or 'unknown error')}"
    ]
    if outcome.undone:
        lines.append("undone: " + ", ".join(code(k) for k in outcome.undone))
    if "create_slot" in outcome.undone:
        lines.append(
            f"the slot {slot} this run created was dropped again (it was new and held nothing "
            "the replica needed)"
        )
    for problem in outcome.undo_errors:
        lines.append(f"{WARN} undo failed: {esc(problem)}")
    if outcome.kind == "detachslot" and "drop_slot" not in outcome.done:
        lines.append(f"slot {slot} was not dropped")
    return "\n".join(lines)


def button_attach_slot(node: str) -> str:
    """Label of the /attachslot confirmation button."""
    return f"Attach slot to {node}"


def button_detach_slot(node: str) -> str:
    """Label of the /detachslot confirmation button."""
    return f"Detach and drop slot of {node}"


# ==== /repair (issue 9) ====================================================================
# Everything /repair, its progress and the alerts' Repair button say. The services give codes
# and values (bot.services.repair.models); the words are here.


REPAIR_USAGE = "/repair NODE [CLUSTER] [--dry-run] [--or-full]"
_REWIND_REASON = {
    "not_available": "not assessed",
    "unreachable": "the replica's host cannot be reached",
    "facts_unreadable": "its timelines could not be read",
    "not_diverged": "it has not diverged",
    "divergence_ahead": "it is ahead of the primary on the same timeline",
    "divergence_unrelated": "its history shares nothing with the primary's",
    "target_running": "yes; the bytes are known once it is stopped",
    "dry_run_ok": "pg_rewind --dry-run agrees",
    "dry_run_failed": "pg_rewind --dry-run refused",
    "no_hints": "neither wal_log_hints nor data checksums on the replica",
    "unclean": "it was not shut down cleanly",
    "wal_missing": "its own WAL back to the fork is gone",
    "source_wal_removed": "the primary no longer has the WAL from the fork",
    "not_granted": "the source role lacks EXECUTE on pg_ls_dir/pg_stat_file/pg_read_binary_file",
    "absent": "no pg_rewind binary on the replica's host",
    "running_no_stop_command": "it runs and no stop_command is configured",
    "other_system": "its data is another cluster's (system identifier differs from the primary's)",
}
_PATH_TITLE = {
    _PathName.RESUME: "resume",
    _PathName.PARAMETERS: "parameters",
    _PathName.REWIND: "rewind (pg_rewind)",
    _PathName.FULL: "full (/rebuild)",
}
_PRECONDITION_TEXT = {
    "primary_up": "primary {primary} answers as a primary",
    "same_history": "on the primary's history (timeline {timeline}, primary {primary_timeline})",
    "wal_available": "WAL from {needed} still on the primary ({how})",
    "standby_data": "the data is a standby's ({state})",
    "settings_ok": "hot-standby settings ≥ the primary's {low}",
    "settings_low": "a hot-standby setting is below the primary's ({names})",
    "alter_system_allowed": "the bot may ALTER SYSTEM on the running replica (lacks: {missing})",
    "same_system": "the data is the primary's cluster (system identifier {replica}, "
    "primary {primary})",
    "auto_conf_readable": "{path} can be edited (readable, holds no password)",
    "diverged": "diverged from the primary (timeline {timeline}, primary {primary_timeline})",
    "rewind_possible": "pg_rewind can rewind it ({reason})",
}
_WAL_HOW = {
    "slot_keeps": "its slot keeps it",
    "slot_lost": "its slot lost it",
    "segment_present": "the segment is in pg_wal",
    "segment_removed": "the segment was removed",
    "primary_down": "primary down",
    "position_unknown": "position unknown",
    "waldir_unreadable": "pg_ls_waldir() not readable",
}
_KEEPS_TEXT = {
    "data_dir": "the data directory as it is",
    "auto_conf_copy": "a copy of postgresql.auto.conf",
    "diverged_wal": "the diverged WAL in a side directory",
    "old_data_dir": "the old data directory beside the new one",
}


def _precondition(pre: _Precondition) -> str:
    values = dict(pre.values)
    if "how" in values:
        values["how"] = _WAL_HOW.get(values["how"], values["how"])
    if pre.code == "settings_ok" and values.get("low"):
        values["low"] = f"(below: {values['low']})"
    if pre.code == "rewind_possible":
        reason = _REWIND_REASON.get(values.get("reason", ""), values.get("reason", ""))
        detail = values.get("detail", "").strip().splitlines()
        values["reason"] = reason + (f": {detail[-1][:200]}" if detail else "")
    template = _PRECONDITION_TEXT.get(pre.code, pre.code)
    try:
        text = template.format(**values)
    except KeyError:
        text = pre.code
    return f"{OK if pre.ok else FAIL} {esc(text.strip())}"


def repair_diagnosis(diag: _Diagnosis) -> str:
    """The short diagnosis report."""
    lines = [f"<b>diagnosis of {esc(diag.cluster)}/{esc(diag.node)}</b>"]
    if diag.replica_up:
        role = "in recovery" if diag.in_recovery else "NOT in recovery"
        lines.append(
            f"• up, {role}, {'streaming' if diag.streaming else 'not streaming'}"
            f" ({esc(diag.streaming_seen)}); timeline {esc(diag.timeline or '?')}, "
            f"receive {code(diag.receive_lsn or '–')}, replay {code(diag.replay_lsn or '–')}"
        )
    else:
        server = {True: "running", False: "stopped", None: "state unknown"}[diag.server_running]
        lines.append(f"• does not answer ({esc(diag.replica_error or '?')}); server {server}")
        if diag.controldata is not None:
            cd = diag.controldata
            lines.append(
                f"• pg_controldata: {esc(cd.state or '?')}; REDO {code(cd.redo_lsn or '–')} "
                f"on timeline {esc(cd.timeline or '?')}; system {code(cd.system_identifier)}; "
                f"checksums {'on' if cd.data_checksums else 'off'}, "
                f"wal_log_hints {'on' if cd.wal_log_hints else 'off'}"
            )
    lines.append(
        f"• primary {esc(diag.primary_node)}: "
        + (
            f"timeline {esc(diag.primary_timeline or '?')}, at {code(diag.primary_lsn or '–')}"
            if diag.primary_up
            else "does not answer as a primary"
        )
    )
    slot = f"slot {code(diag.slot)}: " + (
        f"restart_lsn {code(diag.slot_restart_lsn or '–')}, "
        f"wal_status {esc(diag.slot_wal_status or '–')}"
        if diag.slot_exists
        else "missing"
    )
    wal = {True: "still on the primary", False: "GONE from the primary", None: "unknown"}[
        diag.wal_available
    ]
    lines.append(f"• {slot}; WAL it needs: {wal} ({esc(_WAL_HOW.get(diag.wal_note, ''))})")
    conninfo = diag.conninfo
    target = (
        f"{conninfo.host}:{conninfo.port} as {conninfo.user or '?'}"
        if conninfo.present
        else "missing"
    )
    lines.append(
        f"• primary_conninfo {OK if diag.conninfo_ok else FAIL} {esc(target)}; "
        f"primary_slot_name {OK if diag.slot_name_ok else FAIL} "
        f"{code(diag.primary_slot_name or '–')}; "
        f"standby.signal {OK if diag.standby_signal else FAIL + ' missing'}"
    )
    for check in diag.settings:
        if check.too_low:
            lines.append(
                f"• {FAIL} {esc(check.name)} = {esc(check.replica)} is lower than the "
                f"primary's {esc(check.primary)}"
            )
    for refusal in diag.refusals:
        lines.append(
            f"• {FAIL} the server refused to start: {esc(refusal.name)} = {esc(refusal.value)} "
            f"is a lower setting than on the primary, where its value was "
            f"{esc(refusal.primary_value)}"
        )
    return "\n".join(lines)


def _option(option: _RepairOption, chosen: bool) -> str:
    mark = "👉" if chosen else (OK if option.possible else FAIL)
    cost = f"moves {human_bytes(option.bytes_moved)}"
    if option.eta_s is not None:
        rate = human_bytes(int(option.rate_bytes_s))
        source = "measured" if option.rate_source == "measured" else "default rate"
        cost += f", ETA {human_seconds(option.eta_s)} at {rate}/s ({source})"
    keeps = ", ".join(_KEEPS_TEXT.get(k, k) for k in option.keeps)
    lines = [f"{mark} <b>{esc(_PATH_TITLE[option.path])}</b> — {esc(cost)}; keeps {esc(keeps)}"]
    lines.extend(f"   {_precondition(p)}" for p in option.preconditions)
    return "\n".join(lines)


def repair_plan(plan: _Plan) -> str:
    """Every step of a repair plan with the exact action and its undo."""
    lines = [f"<b>plan {esc(plan.kind)} for {esc(plan.cluster)}/{esc(plan.node)}</b>:"]
    for index, step in enumerate(plan.steps, 1):
        lines.append(f"{index}. {esc(step.title)}")
        lines.append(f"   <pre>{esc(describe(step.action))}</pre>")
        if step.undo is not None:
            lines.append(f"   undo: {code(describe(step.undo))}")
    if plan.keeps:
        lines.append("kept for a rollback: " + ", ".join(code(k) for k in plan.keeps))
    if plan.info:
        lines.append(
            "now (may move before the press; not part of the approval): "
            + ", ".join(code(f"{k}={v}") for k, v in plan.info)
        )
    return "\n".join(lines)


def repair_proposal(proposal: _RepairProposal, dry_run: bool) -> str:
    """Diagnosis, every option with ✅/❌ and why, and the chosen plan's exact steps."""
    node = proposal.diagnosis.node
    if proposal.nothing_to_do:
        head = f"{OK} {esc(node)} streams: nothing to repair"
    elif proposal.chosen is None:
        head = f"{FAIL} no repair path for {esc(node)} is possible now"
    else:
        head = f"🩺 repair of {esc(node)}: <b>{esc(_PATH_TITLE[proposal.chosen])}</b>"
    if dry_run:
        head = f"{INFO} dry run: nothing was changed\n" + head
    parts = [head, repair_diagnosis(proposal.diagnosis)]
    parts.append(
        "<b>paths</b>, cheapest first:\n"
        + "\n".join(_option(o, o.path is proposal.chosen) for o in proposal.options)
    )
    if proposal.plan is not None:
        parts.append(repair_plan(proposal.plan))
    return "\n\n".join(parts)


def repair_full_needed(node: str) -> str:
    """The full path was chosen: the /rebuild plan follows with its own confirmation."""
    return (
        f"{WARN} {esc(node)} needs a full copy: the /rebuild plan follows "
        f"(the same as {code('/rebuild ' + node)})."
    )


def repair_confirm(plan: _Plan, ttl_s: float, second_approver: bool) -> str:
    """The question shown with the repair confirmation button."""
    return (
        f"{WARN} <b>Run the {esc(plan.kind.removeprefix('repair.'))} repair of "
        f"{esc(plan.node)}</b> on {esc(plan.host)} ({len(plan.steps)} steps above)?\n"
        + _expiry(ttl_s, _approver(second_approver))
    )


def repair_confirmed(plan: _Plan, by: str) -> str:
    """The confirmation message once pressed."""
    return f"{OK} {esc(plan.kind)} of <b>{esc(plan.node)}</b> confirmed by {esc(by)}"


def repair_plan_changed(node: str, diff: Sequence[str]) -> str:
    """The plan computed at the press differs from the approved one: nothing ran."""
    shown = "\n".join(diff) or "(the chosen path is not the one approved)"
    return (
        f"{FAIL} repair of {esc(node)} not started: the plan changed since it was shown. "
        f"Run {code('/repair ' + node)} again.\n<pre>{esc(shown)}</pre>"
    )


def button_repair(node: str) -> str:
    """The label of the repair confirmation button."""
    return f"Repair {node}"


def repair_progress(progress: _RepairProgress) -> str:
    """The live message of a running repair (edited in place)."""
    where = f"{esc(progress.cluster)}/{esc(progress.node)}"
    path = esc(progress.kind.removeprefix("repair."))
    if progress.state == RebuildState.RUNNING.value:
        return (
            f"⏳ repairing {where} ({path}): step {progress.step_index + 1}/"
            f"{progress.step_count}: {esc(progress.step)}"
        )
    if progress.state == RebuildState.SUCCEEDED.value:
        kept = ", ".join(code(k) for k in progress.keeps)
        return f"{OK} repaired {where} ({path}): {esc(progress.detail)}" + (
            f"\nKept: {kept}" if kept else ""
        )
    head = (
        f"🆘 repair of {where} failed and UNDO FAILED: {esc(progress.detail)}"
        if progress.state == RebuildState.ROLLBACK_FAILED.value
        else f"{FAIL} repair of {where} failed, undone: {esc(progress.detail)}"
    )
    lines = [head]
    if progress.undone:
        lines.append("undone: " + ", ".join(esc(u) for u in progress.undone))
    if progress.output:
        lines.append(f"<pre>{esc(progress.output)}</pre>")
    return "\n".join(lines)


def alert_repair_label(alert: Alert) -> str:
    """The Repair button of an alert about a replica."""
    return f"🩺 Repair #{alert.id}"


def repair_button_refused(node: str) -> str:
    """A non-admin pressed an alert's Repair button."""
    return f"only an admin may repair {node}; ask one to press Repair or run /repair {node}"


def demo_param_lowered(node: str, log_tail: str) -> str:
    """/demo lower-param: the replica now refuses to start, as in the runbook."""
    return (
        f"{WARN} {esc(node)} now refuses to start: its max_worker_processes is 4, the "
        f"primary's 6. Server log:\n<pre>{esc(log_tail)}</pre>\nTry {code('/repair ' + node)}."
    )
