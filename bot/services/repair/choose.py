"""The choice between repair paths: a pure function of the diagnosis.

Paths are listed cheapest first — resume, parameters, rewind, full — each with its
preconditions (a code and the values it was judged on; the wording is in render.py), the
bytes it will move, an ETA from the node's throughput and what it keeps for a rollback.
The chosen path is the first whose preconditions all hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.services.repair.models import (
    Diagnosis,
    PathName,
    Precondition,
    RepairOption,
)

DEFAULT_RATE_BYTES_S = 50 * 1024**2  # stated in the reply when nothing was measured here
STANDBY_STATES = frozenset({"shut down in recovery", "in archive recovery"})


@dataclass(frozen=True)
class Throughput:
    """Bytes per second for ETAs, and where the figure comes from."""

    bytes_s: float = DEFAULT_RATE_BYTES_S
    source: str = "default"  # "measured" (this node's last rebuild) | "default"


@dataclass(frozen=True)
class RewindVerdict:
    """What the rewind path's builder says (None from the hook: not available)."""

    possible: bool
    reason: str = ""  # a code the rendering layer words
    bytes_moved: int | None = None
    detail: str = ""  # e.g. the tail of pg_rewind --dry-run when it refused


def _pre(code: str, ok: bool, **values: object) -> Precondition:
    return Precondition(code, ok, tuple((k, str(v)) for k, v in values.items()))


def _lsn(text: str | None) -> int | None:
    if not text or "/" not in text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def wal_to_stream(diag: Diagnosis) -> int | None:
    """Bytes of WAL between the replica's position and the primary's."""
    ours, theirs = _lsn(diag.needed_lsn), _lsn(diag.primary_lsn)
    if ours is None or theirs is None:
        return None
    return max(0, theirs - ours)


def _common(diag: Diagnosis) -> list[Precondition]:
    same_history = diag.divergence is None or diag.divergence.kind == "behind"
    return [
        _pre("primary_up", diag.primary_up, primary=diag.primary_node),
        _pre(
            "same_history",
            same_history,
            timeline=diag.timeline or "?",
            primary_timeline=diag.primary_timeline or "?",
        ),
        _pre(
            "wal_available",
            diag.wal_available is True,
            needed=diag.needed_lsn or "?",
            how=diag.wal_note,
        ),
    ]


def _alter_system_allowed(diag: Diagnosis) -> Precondition:
    """The bot's role may ALTER SYSTEM what the plan sets on the running replica."""
    missing = diag.alter_system_missing
    return _pre(
        "alter_system_allowed",
        missing is not None and not missing,
        missing="not_read" if missing is None else ", ".join(missing) or "-",  # a code
    )


def _same_system(diag: Diagnosis) -> Precondition:
    """The replica's data is this primary's cluster (pg_control's system identifier)."""
    ok = diag.system_identifier is not None and (
        diag.system_identifier == diag.primary_system_identifier
    )
    return _pre(
        "same_system",
        ok,
        replica=diag.system_identifier or "?",
        primary=diag.primary_system_identifier or "?",
    )


def _standby_data(diag: Diagnosis) -> Precondition:
    """The data is a standby's: in recovery when up; a standby's shutdown state when down."""
    if diag.replica_up:
        return _pre("standby_data", diag.in_recovery is True, state="in_recovery")  # a code
    state = diag.controldata.state if diag.controldata else ""
    return _pre("standby_data", state in STANDBY_STATES, state=state or "?")


def _eta(size: int | None, rate: Throughput) -> float | None:
    return None if size is None else size / rate.bytes_s


def choose(
    diag: Diagnosis,
    full_bytes: int | None,
    rate: Throughput = Throughput(),
    rewind: RewindVerdict | None = None,
) -> tuple[tuple[RepairOption, ...], PathName | None]:
    """Every option in order and the chosen one (None: nothing works, or nothing to do)."""
    low = diag.low_settings
    refused = diag.refusals
    settings_ok = not low and not refused
    stream = wal_to_stream(diag)
    needs_edit = not diag.replica_up
    auto_conf_ok = _pre("auto_conf_readable", diag.auto_conf is not None, path=diag.auto_conf_path)
    resume_pre = [
        *_common(diag),
        _same_system(diag),
        _standby_data(diag),
        _pre(
            "settings_ok",
            settings_ok,
            low=", ".join(f"{s.name}={s.replica}<{s.primary}" for s in low)
            or ", ".join(f"{r.name}={r.value}<{r.primary_value}" for r in refused),
        ),
    ]
    config_fix = not (diag.conninfo_ok and diag.slot_name_ok)
    if config_fix and needs_edit:
        resume_pre.append(auto_conf_ok)
    elif config_fix:  # ALTER SYSTEM on the running replica
        resume_pre.append(_alter_system_allowed(diag))
    param_pre = [
        *_common(diag),
        _same_system(diag),
        _standby_data(diag),
        _pre(
            "settings_low",
            not settings_ok,
            names=", ".join(s.name for s in low) or ", ".join(r.name for r in refused) or "-",
        ),
    ]
    if needs_edit:
        param_pre.append(auto_conf_ok)
    else:  # ALTER SYSTEM on the running replica
        param_pre.append(_alter_system_allowed(diag))
    diverged = diag.divergence is not None and diag.divergence.kind == "diverged"
    rewind_pre = [
        _pre("primary_up", diag.primary_up, primary=diag.primary_node),
        _pre(
            "diverged",
            diverged,
            timeline=diag.timeline or "?",
            primary_timeline=diag.primary_timeline or "?",
        ),
        _pre(
            "rewind_possible",
            rewind is not None and rewind.possible,
            reason=(rewind.reason if rewind else "not_available"),
            detail=(rewind.detail if rewind else ""),
        ),
    ]
    keep_conf = ("auto_conf_copy",)
    options = (
        RepairOption(
            PathName.RESUME,
            tuple(resume_pre),
            stream,
            _eta(stream, rate),
            rate.bytes_s,
            rate.source,
            ("data_dir",) + (keep_conf if config_fix else ()),
        ),
        RepairOption(
            PathName.PARAMETERS,
            tuple(param_pre),
            stream,
            _eta(stream, rate),
            rate.bytes_s,
            rate.source,
            ("data_dir", *keep_conf),
        ),
        RepairOption(
            PathName.REWIND,
            tuple(rewind_pre),
            rewind.bytes_moved if rewind else None,
            _eta(rewind.bytes_moved if rewind else None, rate),
            rate.bytes_s,
            rate.source,
            ("diverged_wal",),
        ),
        RepairOption(
            PathName.FULL,
            (_pre("primary_up", diag.primary_up, primary=diag.primary_node),),
            full_bytes,
            _eta(full_bytes, rate),
            rate.bytes_s,
            rate.source,
            ("old_data_dir",),
        ),
    )
    if diag.streaming:
        return options, None
    chosen = next((o.path for o in options if o.possible), None)
    return options, chosen
