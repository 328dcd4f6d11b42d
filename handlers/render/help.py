"""/audit, /help, /whoami and `replbot audit verify` wording."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.models import (
    AuditEntry,
    AuditVerification,
    Outcome,
    Role,
    User,
)
from handlers.base import Purpose
from handlers.i18n import N_, _, ngettext
from handlers.render.common import (
    AUDIT_FIELD_CHARS,
    FAIL,
    INFO,
    MAX_AUDIT_LINES,
    OK,
    WARN,
    code,
    esc,
    one_line,
)


def audit(entries: Sequence[AuditEntry]) -> str:
    """The newest audit rows, newest first; one line each whatever they hold, at most
    MAX_AUDIT_LINES of them."""
    if not entries:
        return f"{INFO} " + _("the audit log is empty")
    icon = {Outcome.OK: OK, Outcome.REFUSED: WARN, Outcome.FAILED: FAIL, Outcome.INTENT: INFO}
    count = len(entries)
    lines = [
        f"{INFO} "
        + ngettext(
            "last {count} audit entry, newest first",
            "last {count} audit entries, newest first",
            count,
        ).format(count=count)
    ]
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
        more = len(entries) - MAX_AUDIT_LINES
        lines.append(
            "… "
            + ngettext(
                "and {n} more entry (ask for fewer with /audit N)",
                "and {n} more entries (ask for fewer with /audit N)",
                more,
            ).format(n=more)
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


@dataclass(frozen=True)
class HelpEntry:
    """One command as /help shows it (summary and note are msgids, translated here)."""

    usage: str
    summary: str
    role: Role
    example: str
    purpose: Purpose
    role_note: str = ""


# The headings of /help's groups, in the order of :class:`Purpose`.
_PURPOSE_HEADINGS = {
    Purpose.WATCH: ("👀", N_("Watch replication")),
    Purpose.SLOTS: ("🧷", N_("Replication slots")),
    Purpose.REPAIR: ("🛠", N_("Repair and rebuild")),
    Purpose.ALERTS: ("🔔", N_("Alerts")),
    Purpose.ADMIN: ("🔐", N_("Administration and audit")),
    Purpose.YOU: ("🙋", N_("You and this bot")),
}


def help_text(user: User, commands: Iterable[HelpEntry]) -> str:
    """The commands this user may run, grouped by what they do; per command its summary, the
    role it needs and one example. Longer than a message? The transport splits it at line
    boundaries (between commands)."""
    role = user.role.label if user.role else _("none")
    lines = [
        f"{INFO} " + _("commands for {name} ({role}):").format(name=esc(user.name), role=esc(role))
    ]
    entries = list(commands)
    for purpose in Purpose:
        members = [e for e in entries if e.purpose is purpose]
        if not members:
            continue
        icon, heading = _PURPOSE_HEADINGS[purpose]
        lines.append("")
        lines.append(f"{icon} <b>{esc(_(heading))}</b>")
        for entry in members:
            lines.append(f"• {code(entry.usage)} — {esc(_(entry.summary))}")
            needed = f"<i>{esc(entry.role.label)}</i>"
            if entry.role_note:
                needed += f" ({esc(_(entry.role_note))})"
            lines.append(
                "   "
                + _("role {role} · example {example}").format(
                    role=needed, example=code(entry.example)
                )
            )
    return "\n".join(lines)


def whoami(user: User, chat_id: int) -> str:
    """The caller's id, name and role."""
    role = user.role.label if user.role else _("none (not allowed)")
    return f"{INFO} " + _("you are {name}, id {id}, role {role}; chat {chat}").format(
        name=esc(user.name), id=code(user.id), role=f"<b>{esc(role)}</b>", chat=code(chat_id)
    )


_LANGUAGE_NAMES = {"en": "English", "ru": "русский"}


def language_current(language: str) -> str:
    """Reply to /lang without an argument."""
    return f"{INFO} " + _("your replies are in {language}; choose with {command}").format(
        language=esc(_LANGUAGE_NAMES.get(language, language)), command=code("/lang ru|en")
    )


def language_set(language: str) -> str:
    """Reply to /lang ru|en (rendered in the language just chosen)."""
    return f"{OK} " + _("from now on your replies are in {language}").format(
        language=esc(_LANGUAGE_NAMES.get(language, language))
    )


def language_usage() -> str:
    """Refusal of a /lang argument that is not a supported language (plain text)."""
    return _("usage: /lang ru or /lang en")


def language_not_stored() -> str:
    """Refusal of /lang when the bot runs without its store (plain text)."""
    return _("this bot cannot remember a language choice (it has no store)")


def not_allowed() -> str:
    """Refusal of an unknown user in a private chat (plain text)."""
    return _("you are not allowed to use this bot")


def unknown_user_id(user_id: int) -> str:
    """An unknown user's /start or /whoami in a private chat: their id, and who can add them."""
    return f"{INFO} " + _(
        "your Telegram id is {id}; you are not a user of this bot yet: ask an admin to add you "
        "(users[] in its config)"
    ).format(id=code(user_id))
