"""Replies of the demo's own /demo commands."""

from __future__ import annotations

from handlers.i18n import N_, _, ngettext
from handlers.render.common import INFO, OK, WARN, code, esc, human_duration

# The summary of the demo's own /demo command in /help (translated where it is shown).
DEMO_COMMAND_SUMMARY = N_("demo only: stop/start/diverge the local replica")


def demo_replica_changed(node: str, stopped: bool, interval_s: float) -> str:
    """Reply of the demo's /demo stop-replica and start-replica."""
    if stopped:
        return f"{WARN} " + _(
            "demo replica {node} stopped; the monitor polls every {interval} and will say so here"
        ).format(node=esc(node), interval=esc(human_duration(interval_s)))
    return f"{OK} " + _(
        "demo replica {node} started; the alert resolves once it streams again"
    ).format(node=esc(node))


def demo_replica_diverged(node: str, rows: int, timeline: int) -> str:
    """Reply of the demo's /demo diverge-replica."""
    return f"{WARN} " + ngettext(
        "demo replica {node} promoted (timeline {timeline}) and {rows} row written on it: it "
        "diverged from the primary; /repair {node} can rewind it",
        "demo replica {node} promoted (timeline {timeline}) and {rows} rows written on it: it "
        "diverged from the primary; /repair {node} can rewind it",
        rows,
    ).format(node=esc(node), timeline=timeline, rows=rows)


def demo_waited(seconds: int) -> str:
    """Reply of the demo's /demo wait N."""
    return f"{INFO} " + _("waited {duration}").format(duration=human_duration(seconds))


def demo_param_lowered(node: str, log_tail: str) -> str:
    """/demo lower-param: the replica now refuses to start, as in the runbook."""
    return (
        f"{WARN} "
        + _(
            "{node} now refuses to start: its max_worker_processes is 4, the primary's 6. "
            "Server log:"
        ).format(node=esc(node))
        + f"\n<pre>{esc(log_tail)}</pre>\n"
        + _("Try {command}.").format(command=code("/repair " + node))
    )


# The demo console's own lines (plain text, printed by bot/demo.py).


def demo_starting(major: int, replicas: int, base: str) -> str:
    """First line of ``replbot demo``."""
    return ngettext(
        "starting a PostgreSQL {major} primary and {n} replica in {base} …",
        "starting a PostgreSQL {major} primary and {n} replicas in {base} …",
        replicas,
    ).format(major=major, n=replicas, base=base)


def demo_ready(ports: str, user: str, charts_dir: str) -> list[str]:
    """What the demo console says once the clusters run (``charts_dir``: where /graph's
    pictures are written)."""
    return [
        _("ready ({ports}); you are {user} (admin). Try /status, /slots, /check,").format(
            ports=ports, user=user
        ),
        _("/createslot NAME, /dropslot NAME, /rebuild pg2, /audit, /help; /quit to leave."),
        _(
            "Charts: /graph (or /graph pg2 24h) writes a PNG of lag and slot WAL into {folder}."
        ).format(folder=charts_dir),
        _("Alerts print here: try /demo stop-replica, /alerts, then /demo start-replica."),
        _("Replies in Russian: /lang ru (or start the demo with --lang ru)."),
    ]


def demo_over_ssh(target: str, key_file: str, known_hosts: str) -> str:
    """The demo's line when /rebuild goes through the loopback sshd."""
    return _(
        "/rebuild runs over SSH: {target}, key {key_file}, host key pinned in {known_hosts}"
    ).format(target=target, key_file=key_file, known_hosts=known_hosts)


def demo_interrupted() -> str:
    """Ctrl-C in the demo console."""
    return _("interrupted")


def demo_kept(base: str) -> str:
    """The demo ended with --keep."""
    return _("servers stopped; files kept in {base}").format(base=base)


def demo_removed() -> str:
    """The demo ended and cleaned up."""
    return _("demo clusters stopped and removed")


def console_buttons(labels: list[str]) -> str:
    """The console chat's line under a reply with buttons (plain text)."""
    return _("  buttons: {labels}   (type the number to press)").format(labels="   ".join(labels))
