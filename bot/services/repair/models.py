"""Immutable results of a repair's diagnosis and choice (rendered by handlers/render.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.phrases import Phrase
from bot.services.plans.model import Plan
from bot.services.repair.controldata import ControlData
from bot.services.repair.timeline import Divergence


@dataclass(frozen=True)
class SettingCheck:
    """A hot-standby setting that must be ≥ the primary's (values as the servers read them)."""

    name: str
    replica: int | None
    primary: int | None

    @property
    def too_low(self) -> bool:
        """True when the replica's value is known and below the primary's."""
        return self.replica is not None and self.primary is not None and self.replica < self.primary


@dataclass(frozen=True)
class StartRefusal:
    """A refused start, from the server log: ``name = value`` below the primary's."""

    name: str
    value: int
    primary_value: int


@dataclass(frozen=True)
class ConninfoView:
    """What the replica's ``primary_conninfo`` names (never its password)."""

    present: bool
    host: str = ""
    port: str = ""
    user: str = ""
    application_name: str = ""
    has_password: bool = False


@dataclass(frozen=True)
class Diagnosis:
    """One read-only look at a replica and its primary (one snapshot each, one SSH run)."""

    cluster: str
    node: str
    primary_node: str
    primary_up: bool
    primary_timeline: int | None
    primary_lsn: str | None
    replica_up: bool  # the server answers SQL
    replica_error: str | None
    server_running: bool | None  # pg_ctl status (None: not known)
    in_recovery: bool | None
    streaming: bool
    streaming_seen: tuple[Phrase, ...]  # what judge_streaming saw (``verify.*``)
    timeline: int | None  # the replica's (its checkpoint's when down)
    receive_lsn: str | None
    replay_lsn: str | None
    controldata: ControlData | None  # when the server is down
    slot: str
    slot_exists: bool
    slot_restart_lsn: str | None
    slot_wal_status: str | None
    needed_lsn: str | None  # where the replica's WAL stream has to resume
    wal_available: bool | None  # the WAL from needed_lsn is still on the primary (None: unknown)
    wal_note: str  # how wal_available was decided
    settings: tuple[SettingCheck, ...]
    conninfo: ConninfoView
    expected_host: str
    expected_port: str
    primary_slot_name: str
    standby_signal: bool
    refusals: tuple[StartRefusal, ...]
    application_name: str  # the name it streams / should stream under
    auto_conf: str | None  # postgresql.auto.conf as read (None: not read / has a password)
    auto_conf_path: str
    divergence: Divergence | None = None
    system_identifier: str | None = None  # the replica's (pg_control; None: not read)
    primary_system_identifier: str | None = None  # pg_control_system() on the primary
    # what the bot's role lacks for ALTER SYSTEM of the low settings on the running replica
    # (grants; "allow_alter_system = on" on 17+); None: not read
    alter_system_missing: tuple[str, ...] | None = None

    @property
    def low_settings(self) -> tuple[SettingCheck, ...]:
        """Settings below the primary's."""
        return tuple(s for s in self.settings if s.too_low)

    @property
    def conninfo_ok(self) -> bool:
        """primary_conninfo names the configured replication source."""
        c = self.conninfo
        return c.present and c.host == self.expected_host and c.port == self.expected_port

    @property
    def slot_name_ok(self) -> bool:
        """primary_slot_name is the configured slot."""
        return self.primary_slot_name == self.slot


class PathName(enum.StrEnum):
    """The repair paths, cheapest first."""

    RESUME = "resume"
    PARAMETERS = "parameters"
    REWIND = "rewind"
    FULL = "full"


@dataclass(frozen=True)
class Precondition:
    """One precondition of a path: ``code`` names it (wording in render.py), ``values`` the
    figures it was judged on."""

    code: str
    ok: bool
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RepairOption:
    """One path with its preconditions, cost and what it keeps for a rollback."""

    path: PathName
    preconditions: tuple[Precondition, ...]
    bytes_moved: int | None  # None: unknown
    eta_s: float | None
    rate_bytes_s: float
    rate_source: str  # "measured" | "default"
    keeps: tuple[str, ...] = ()

    @property
    def possible(self) -> bool:
        """Every precondition holds."""
        return all(p.ok for p in self.preconditions)

    @property
    def failed(self) -> tuple[Precondition, ...]:
        """The preconditions that do not hold."""
        return tuple(p for p in self.preconditions if not p.ok)


@dataclass(frozen=True)
class RepairProposal:
    """What /repair shows: the diagnosis, every option, the chosen one and its plan."""

    diagnosis: Diagnosis
    options: tuple[RepairOption, ...]
    chosen: PathName | None
    plan: Plan | None  # None for "full" (the /rebuild plan is offered instead) or nothing
    digest: str
    nothing_to_do: bool = False  # the replica streams already
    tag: str = ""  # names the kept copies; the approval carries it


@dataclass(frozen=True)
class RepairProgress:
    """What a running repair reports to whoever watches it (the chat's progress message)."""

    job_id: int
    cluster: str
    node: str
    kind: str  # the plan's kind, e.g. "repair.resume"
    step: str  # the step's key
    step_index: int
    step_count: int
    state: str  # a RebuildState value: running, succeeded, rolled_back, rollback_failed
    detail: str = ""
    output: str = ""
    undone: tuple[str, ...] = ()
    keeps: tuple[str, ...] = ()
    log_tail: str = ""  # at the end: what streamed steps printed (pg_rewind's progress)
    title: Phrase | None = None  # the running step's title
    said: tuple[Phrase, ...] = ()  # the ending, in parts (``detail`` is their neutral form)
