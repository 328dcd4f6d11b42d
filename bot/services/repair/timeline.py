"""Where a replica stands against the primary's history: behind it, or diverged from it.

A hook owned by the pg_rewind path; :func:`classify_divergence` is the one entry the
diagnosis calls.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Divergence:
    """The replica left the primary's history (or may have) at ``fork_lsn``."""

    fork_lsn: str
    fork_timeline: int
    kind: str  # "behind" | "diverged"


def classify_divergence(
    replica_timeline: int | None, primary_timeline: int | None, replica_lsn: str | None
) -> Divergence | None:
    """None while the replica is on the primary's timeline (or either is unknown).

    Without the primary's timeline history the fork point is not known yet: a replica on
    another timeline is reported as diverged at its own position (the rewind path refines it).
    """
    if replica_timeline is None or primary_timeline is None:
        return None
    if replica_timeline == primary_timeline:
        return None
    return Divergence(fork_lsn=replica_lsn or "", fork_timeline=replica_timeline, kind="diverged")
