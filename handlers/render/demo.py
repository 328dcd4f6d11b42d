"""Replies of the demo's own /demo commands."""

from __future__ import annotations

from handlers.render.common import INFO, OK, WARN, code, esc, human_duration


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


def demo_param_lowered(node: str, log_tail: str) -> str:
    """/demo lower-param: the replica now refuses to start, as in the runbook."""
    return (
        f"{WARN} {esc(node)} now refuses to start: its max_worker_processes is 4, the "
        f"primary's 6. Server log:\n<pre>{esc(log_tail)}</pre>\nTry {code('/repair ' + node)}."
    )
