"""The one model of a change to a replica: a plan is an ordered tuple of typed steps.

Each :class:`Step` carries its *action* — what runs, in full — and optionally its *undo*.
The text a ``--dry-run`` or a confirmation shows is :func:`describe` of those actions, and
the runner executes those same actions, so what was shown is what runs. An approval is bound
to :func:`plan_digest`; at the press the plan is computed again from fresh state and a
different digest refuses the start.

Actions:

* :class:`RemoteCommand` — one shell command line on the replica's host, with the exit
  codes that count as success (``stream`` for long commands whose output is progress).
* :class:`Sql` — one statement with bound parameters, on the primary or on the replica.
* :class:`Wait` — poll a named :class:`Probe` until it holds or ``timeout_s`` passes.
* :class:`FileEdit` — replace a file on the replica's host with ``content``, keeping the
  original as ``backup_path`` (never overwritten if it exists).
* :class:`SlotChange` — a physical slot on the primary, through the Postgres port's slot
  statements (idempotent: a create keeps an existing slot, a drop of a missing one is done).
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field

from bot.phrases import Phrase


class SqlTarget(enum.StrEnum):
    """Where a :class:`Sql` step runs."""

    PRIMARY = "primary"
    REPLICA = "replica"


class Probe(enum.StrEnum):
    """Conditions a :class:`Wait` polls (implemented by the runner)."""

    SERVER_STOPPED = "server_stopped"  # pg_ctl status exits 3 on the replica host
    SERVER_RUNNING = "server_running"  # pg_ctl status exits 0
    SLOT_INACTIVE = "slot_inactive"  # args: (slot,) — no walsender holds it
    STREAMING = "streaming"  # args: (slot, application_name, sync_state) — both sides agree


@dataclass(frozen=True)
class RemoteCommand:
    """A shell command line on the replica's host (every word already quoted)."""

    command: str
    ok_exits: tuple[int, ...] = (0,)
    timeout_s: float | None = None  # None: the service's command timeout
    stream: bool = False  # long-running; output chunks are progress


@dataclass(frozen=True)
class Sql:
    """One SQL statement with bound parameters (``%s`` placeholders)."""

    target: SqlTarget
    statement: str
    params: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class Wait:
    """Poll ``probe`` every ``interval_s`` until it holds; fail after ``timeout_s``."""

    probe: Probe
    timeout_s: float
    interval_s: float = 1.0
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileEdit:
    """Write ``content`` to ``path`` on the replica's host; keep the original at
    ``backup_path`` first (an existing backup is never overwritten)."""

    path: str
    content: str
    backup_path: str


class SlotOp(enum.StrEnum):
    """What a :class:`SlotChange` does."""

    CREATE = "create"  # kept as it is if it exists
    DROP = "drop"  # nothing to do if it does not exist
    COPY = "copy"  # copy ``source`` (when it reserves WAL) into ``slot``, replacing an
    # inactive earlier copy: the copy keeps the WAL from the source's restart_lsn


@dataclass(frozen=True)
class SlotChange:
    """Create, drop or copy a physical replication slot on the primary."""

    op: SlotOp
    slot: str
    source: str = ""


Action = RemoteCommand | Sql | Wait | FileEdit | SlotChange


@dataclass(frozen=True)
class Step:
    """One step: a stable key (audit, progress), a title for the chat, what runs, its undo.

    ``title`` is a :class:`~bot.phrases.Phrase` (``step.*``), worded by the rendering layer:
    the digest hashes its key and values, so it is the same in every language.

    ``irreversible``: once this step has begun, the steps before it are no longer undone
    (e.g. pg_rewind: starting the old server again on a half-rewound directory would be
    wrong; a human looks, nothing is deleted)."""

    key: str
    title: Phrase
    action: Action
    undo: Action | None = None
    irreversible: bool = False


@dataclass(frozen=True)
class Plan:
    """Everything one change of one replica will do, in order.

    ``kind`` names the path ("rebuild", "repair.resume", "repair.parameters",
    "repair.rewind", ...); ``keeps`` lists what stays for a rollback (directories, files,
    slots), ``facts`` the inputs the plan was computed from that an approval depends on
    (e.g. the primary's timeline), both part of the digest. ``info`` is shown with the
    plan but is not part of the digest: values that move between the proposal and the
    press without changing what runs (a live target's insert LSN, its client count).
    """

    kind: str
    cluster: str
    node: str
    host: str
    steps: tuple[Step, ...]
    keeps: tuple[str, ...] = ()
    facts: tuple[tuple[str, str], ...] = field(default=())
    info: tuple[tuple[str, str], ...] = field(default=())


def action_kind(action: Action) -> str:
    """Where an action runs, as a plan shows it: sql, remote, check or file."""
    if isinstance(action, Sql | SlotChange):
        return "sql"
    if isinstance(action, RemoteCommand):
        return "remote"
    if isinstance(action, Wait):
        return "check"
    return "file"


def describe(action: Action) -> str:
    """The exact text of an action, as ``--dry-run`` and the confirmation show it."""
    if isinstance(action, SlotChange):
        return _describe_slot(action)
    if isinstance(action, RemoteCommand):
        exits = (
            ""
            if action.ok_exits == (0,)
            else f"   # ok: exit {'/'.join(map(str, action.ok_exits))}"
        )
        return action.command + exits
    if isinstance(action, Sql):
        params = f"   -- params: {', '.join(map(str, action.params))}" if action.params else ""
        return f"[{action.target.value}] {action.statement}{params}"
    if isinstance(action, Wait):
        return _describe_wait(action)
    return f"write {action.path} (original kept as {action.backup_path}):\n{action.content}"


def _describe_slot(action: SlotChange) -> str:
    if action.op is SlotOp.CREATE:
        return (
            f"SELECT pg_catalog.pg_create_physical_replication_slot('{action.slot}')"
            "   -- kept if it exists"
        )
    if action.op is SlotOp.DROP:
        return f"SELECT pg_catalog.pg_drop_replication_slot('{action.slot}')   -- if it exists"
    return (
        f"SELECT pg_catalog.pg_copy_physical_replication_slot('{action.source}', "
        f"'{action.slot}')   -- only if {action.source} has a restart_lsn"
    )


def _describe_wait(action: Wait) -> str:
    head = f"wait ≤ {action.timeout_s:g} s: "
    if action.probe is Probe.STREAMING:
        slot, name, sync_state = (*action.args, "", "", "")[:3]
        text = (
            "replica: in recovery, pg_stat_wal_receiver.status = 'streaming'; "
            f"primary: slot {slot} active, its walsender streaming as application_name {name}"
        )
        if sync_state in ("sync", "quorum", "potential"):
            text += f", sync_state {sync_state}"
        return head + text
    if action.probe is Probe.SLOT_INACTIVE:
        slot = action.args[0] if action.args else ""
        return head + f"slot {slot} inactive (pg_replication_slots.active = false)"
    if action.probe is Probe.SERVER_STOPPED:
        return head + "pg_ctl status exits 3 (no server running)"
    return head + "pg_ctl status exits 0 (server running)"


def plan_digest(plan: Plan) -> str:
    """A short hash of everything the plan does; an approval is bound to it (``info``,
    shown only, is left out)."""
    hashed = asdict(plan)
    hashed.pop("info", None)
    data = json.dumps(hashed, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def plan_diff(shown: Plan, fresh: Plan) -> list[str]:
    """Lines that differ between the approved plan and the one computed at the press."""
    shown_lines = [f"{s.key}: {describe(s.action)}" for s in shown.steps] + [
        f"{k}={v}" for k, v in shown.facts
    ]
    fresh_lines = [f"{s.key}: {describe(s.action)}" for s in fresh.steps] + [
        f"{k}={v}" for k, v in fresh.facts
    ]
    removed = [f"- {line}" for line in shown_lines if line not in fresh_lines]
    added = [f"+ {line}" for line in fresh_lines if line not in shown_lines]
    return removed + added
