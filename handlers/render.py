"""Pure functions: domain snapshots -> Telegram-HTML text. The only place replies are worded.

Every dynamic value goes through :func:`esc`. No tag spans two lines, so a reply can be split
at line boundaries without breaking markup (see :func:`split_message`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from bot.models import (
    AuditEntry,
    AuditVerification,
    CheckLevel,
    ClusterCheck,
    ClusterSlots,
    ClusterStatus,
    Outcome,
    ReplicaView,
    SlotInfo,
    User,
    WalSender,
)

TELEGRAM_LIMIT = 4096
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
            f"<b>{esc(p.node)}</b> primary · up · PostgreSQL {esc(p.server_version)}"
            f" · timeline {esc(p.timeline if p.timeline is not None else '–')}"
            f" · LSN {code(p.current_lsn or '–')}{role_note}"
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
    receiver = replica.receiver
    if receiver is not None:
        if not receiver.in_recovery:
            lines.append(f"   {WARN} not in recovery: this node is a primary now")
        source = f"{receiver.sender_host}:{receiver.sender_port}" if receiver.sender_host else "–"
        lines.append(
            f"   receiver {esc(receiver.receiver_status or 'not running')} from {esc(source)}"
            f" · slot {esc(receiver.slot_name or '–')}"
            f" · flushed {code(receiver.flushed_lsn or '–')}"
            f" · replay delay {esc(human_seconds(receiver.replay_delay_s))}"
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
    lines.extend(_slot_line(s) for s in cluster.slots)
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


def confirm_drop_slot(slot: SlotInfo, cluster: str, node: str, ttl_s: float) -> str:
    """The question shown with the drop confirmation buttons."""
    return (
        f"{WARN} Drop slot {code(slot.name)} on {esc(cluster)}/{esc(node)}?\n"
        + (
            f"It is inactive and retains {esc(human_bytes(slot.retained_bytes))} of WAL."
            if slot.retained_bytes is not None
            else "It is inactive and reserves no WAL yet."
        )
        + f" A replica using it will need a rebuild.\n"
        f"Only you can confirm; the button expires in {ttl_s:.0f} s."
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
    """The newest audit rows, newest first."""
    if not entries:
        return f"{INFO} the audit log is empty"
    icon = {Outcome.OK: OK, Outcome.REFUSED: WARN, Outcome.FAILED: FAIL}
    lines = [f"{INFO} last {len(entries)} audit entries, newest first"]
    for e in entries:
        args = f" {e.args}" if e.args else ""
        reason = f" — {e.reason}" if e.reason else ""
        lines.append(
            f"{icon[e.outcome]} #{e.id} {esc(e.at.strftime('%m-%d %H:%M:%S'))} "
            f"{esc(e.user_name)} ({esc(e.user_id if e.user_id is not None else '?')}) "
            f"{code('/' + e.command + args)} {esc(e.outcome.value)}{esc(reason)}"
            f" · {e.duration_ms} ms"
        )
    return "\n".join(lines)


def audit_verification(result: AuditVerification) -> str:
    """Outcome of ``replbot audit verify`` (plain text is fine: no markup needed)."""
    if result.ok:
        return f"audit log ok: {result.rows} rows, hash chain intact"
    return f"audit log TAMPERED at row {result.first_bad_id}: {result.problem}"


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

    Tags never span lines in this module's output, so each chunk stays well-formed. A single
    line longer than ``limit`` loses its markup and is cut between characters, never inside an
    HTML entity.
    """
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        pieces = [line] if len(line) <= limit else _cut_long_line(line, limit)
        for piece in pieces:
            candidate = piece if not current else current + "\n" + piece
            if len(candidate) <= limit:
                current = candidate
            else:
                if current:
                    chunks.append(current)
                current = piece
    if current or not chunks:
        chunks.append(current)
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


def to_plain_text(text: str) -> str:
    """Telegram HTML -> plain text, for the console transport."""
    return html.unescape(_TAG.sub("", text))
