"""Timeline histories: tell a replica that is merely *behind* from one that *diverged*.

A history file (``0000000N.history``, or the content ``TIMELINE_HISTORY N`` returns over a
replication connection) has one line per ancestor timeline, ``parentTLI<TAB>switchpoint<TAB>
reason``: timeline ``parentTLI`` ended at ``switchpoint`` (an LSN) and the next one began there.
Timeline 1 has no history file (an empty text).

:func:`classify_divergence` applies the rule pg_rewind uses (``findCommonAncestorTimeline``):
lay both histories out as (timeline, begin, end) intervals, take the last timeline both share
with the same beginning, and the fork point is the *earlier* of the two ends of that timeline.
A target whose position is at or before the fork point lies on the primary's history (it is
behind: resume can work); one past it diverged (rewind, or a full copy).

Pure functions only: no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

INFINITE_LSN = (1 << 64) - 1
_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class HistoryParseError(ValueError):
    """A timeline history text or an LSN that cannot be read."""


def lsn_to_int(lsn: str) -> int:
    """'0/3000060' -> 50331744."""
    match = _LSN_RE.match(lsn.strip())
    if match is None:
        raise HistoryParseError(f"not an LSN: {lsn!r}")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def int_to_lsn(value: int) -> str:
    """50331744 -> '0/3000060' (as PostgreSQL prints it)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a history file: ``timeline`` ended at ``switchpoint``."""

    timeline: int
    switchpoint: int
    reason: str = ""


@dataclass(frozen=True)
class Divergence:
    """Where the target left the primary's history.

    ``kind``: ``"diverged"`` (the target wrote past the fork point: pg_rewind or a full copy),
    ``"ahead"`` (same timeline, target past the primary: pg_rewind cannot help, full copy),
    ``"unrelated"`` (no common timeline at all: full copy).
    """

    fork_lsn: str
    fork_timeline: int
    kind: str
    target_timeline: int = 0
    target_lsn: str = ""
    primary_timeline: int = 0
    wal_past_fork_bytes: int = 0  # target_lsn - fork_lsn: WAL the rewind discards

    @property
    def rewindable(self) -> bool:
        """True when pg_rewind is the tool for this divergence."""
        return self.kind == "diverged"


def parse_history(text: str) -> tuple[HistoryEntry, ...]:
    """The entries of a history file's text (comments and blank lines skipped)."""
    entries: list[HistoryEntry] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 2)
        if len(fields) < 2 or not fields[0].isdigit():
            raise HistoryParseError(f"history line {number}: {raw!r}")
        switchpoint = lsn_to_int(fields[1])
        timeline = int(fields[0])
        if entries and (timeline <= entries[-1].timeline or switchpoint < entries[-1].switchpoint):
            raise HistoryParseError(f"history line {number}: out of order: {raw!r}")
        entries.append(HistoryEntry(timeline, switchpoint, fields[2] if len(fields) > 2 else ""))
    return tuple(entries)


@dataclass(frozen=True)
class _Interval:
    timeline: int
    begin: int
    end: int


def _intervals(current: int, history: Sequence[HistoryEntry]) -> list[_Interval]:
    out: list[_Interval] = []
    begin = 0
    for entry in history:
        out.append(_Interval(entry.timeline, begin, entry.switchpoint))
        begin = entry.switchpoint
    if history and current <= history[-1].timeline:
        raise HistoryParseError(
            f"timeline {current} is not newer than its history's last ({history[-1].timeline})"
        )
    out.append(_Interval(current, begin, INFINITE_LSN))
    return out


def _history(value: str | Sequence[HistoryEntry]) -> Sequence[HistoryEntry]:
    return parse_history(value) if isinstance(value, str) else value


def classify_divergence(
    target_timeline: int,
    target_lsn: str,
    target_history: str | Sequence[HistoryEntry],
    primary_timeline: int,
    primary_history: str | Sequence[HistoryEntry],
    primary_lsn: str,
) -> Divergence | None:
    """None when the target is on the primary's history and not past it, else where it left.

    ``target_lsn`` is how far the target's data goes: its minimum recovery end (a stopped
    standby), its checkpoint (a cleanly stopped primary) or its current insert LSN (a
    running primary). ``*_history`` is the history text of that side's current timeline
    (``""`` for timeline 1) or its parsed entries.
    """
    target = _intervals(target_timeline, _history(target_history))
    primary = _intervals(primary_timeline, _history(primary_history))
    target_at, primary_at = lsn_to_int(target_lsn), lsn_to_int(primary_lsn)
    common = -1
    for index, (mine, theirs) in enumerate(zip(target, primary, strict=False)):
        if mine.timeline != theirs.timeline or mine.begin != theirs.begin:
            break
        common = index

    def found(fork_lsn: int, timeline: int, kind: str) -> Divergence:
        return Divergence(
            int_to_lsn(fork_lsn),
            timeline,
            kind,
            target_timeline=target_timeline,
            target_lsn=int_to_lsn(target_at),
            primary_timeline=primary_timeline,
            wal_past_fork_bytes=max(0, target_at - fork_lsn),
        )

    if common < 0:
        return found(0, 0, "unrelated")
    fork = min(target[common].end, primary[common].end)
    timeline = target[common].timeline
    if fork == INFINITE_LSN:  # both still on that timeline
        return None if target_at <= primary_at else found(primary_at, timeline, "ahead")
    if target_at <= fork and common == len(target) - 1:
        return None  # the target's timeline continues on the primary past where it stands
    return found(fork, timeline, "diverged")


def classify_by_timeline(
    target_timeline: int | None, primary_timeline: int | None, target_lsn: str | None
) -> Divergence | None:
    """The coarse answer when no history could be read: None while both are on the same
    timeline (or either is unknown), else "diverged" at the target's own position with the
    fork not known. :func:`classify_divergence` with both histories is the real answer
    (a target behind on an older timeline of the primary's history is *behind*)."""
    if target_timeline is None or primary_timeline is None:
        return None
    if target_timeline == primary_timeline:
        return None
    return Divergence(fork_lsn=target_lsn or "", fork_timeline=target_timeline, kind="diverged")
