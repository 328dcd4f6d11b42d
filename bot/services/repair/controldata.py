"""``pg_controldata`` output -> the fields a repair decides on.

Run with ``LC_ALL=C`` so the labels are the English ones parsed here. Unknown or missing
lines leave a field empty; the parser never raises on odd output.
"""

from __future__ import annotations

from dataclasses import dataclass

_LABELS = {
    "Database cluster state": "state",
    "Latest checkpoint location": "checkpoint_lsn",
    "Latest checkpoint's REDO location": "redo_lsn",
    "Latest checkpoint's TimeLineID": "timeline",
    "Database system identifier": "system_identifier",
    "Data page checksum version": "data_checksums",
    "wal_log_hints setting": "wal_log_hints",
    "Minimum recovery ending location": "min_recovery_end_lsn",
}


@dataclass(frozen=True)
class ControlData:
    """What ``pg_control`` says about a (stopped) data directory."""

    state: str = ""  # e.g. "shut down in recovery", "shut down", "in archive recovery"
    checkpoint_lsn: str = ""
    redo_lsn: str = ""
    timeline: int | None = None  # the latest checkpoint's TimeLineID
    system_identifier: str = ""
    data_checksums: bool = False  # checksum version != 0
    wal_log_hints: bool = False
    min_recovery_end_lsn: str = ""


def parse_controldata(text: str) -> ControlData:
    """Parse ``LC_ALL=C pg_controldata DATADIR`` output."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        field = _LABELS.get(label.strip())
        if sep and field is not None:
            raw[field] = value.strip()
    timeline = raw.get("timeline", "")
    checksums = raw.get("data_checksums", "0")
    return ControlData(
        state=raw.get("state", ""),
        checkpoint_lsn=raw.get("checkpoint_lsn", ""),
        redo_lsn=raw.get("redo_lsn", ""),
        timeline=int(timeline) if timeline.isdigit() else None,
        system_identifier=raw.get("system_identifier", ""),
        data_checksums=checksums.isdigit() and int(checksums) != 0,
        wal_log_hints=raw.get("wal_log_hints", "") == "on",
        min_recovery_end_lsn=raw.get("min_recovery_end_lsn", ""),
    )
