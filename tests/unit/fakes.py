"""In-memory fakes of the ports (Postgres, AuditLog, Clock, Chat) and a wired Dispatcher.

The fakes never match SQL text: the Postgres fake records which port method was called for
which node, and answers from plain data that a test can change (or make raise).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.config import AppConfig, NodeConfig, parse_config
from bot.errors import RebuildRefused, RemoteError, SlotActive, SlotAlreadyExists, SlotNotFound
from bot.models import (
    AuditEntry,
    AuditRecord,
    AuditVerification,
    CommandResult,
    HbaRule,
    NodeRole,
    NodeSnapshot,
    RebuildJob,
    RebuildState,
    ReceiverInfo,
    SlotInfo,
    WalSender,
)
from bot.phrases import Phrase
from bot.ports import JobStore, RemoteShell
from bot.services.authz import Authorizer
from bot.services.confirmations import ConfirmationService
from bot.services.rebuild.plan import DIRECTORY_EXISTS_EXIT, Commands
from bot.services.rebuild.service import RebuildService
from bot.services.registry import Services
from bot.services.replication import ReplicationService
from handlers.base import Reply, Request
from handlers.dispatch import Dispatcher
from handlers.registry import ACTIONS, COMMANDS

ADMIN_ID, ADMIN2_ID, OPERATOR_ID, VIEWER_ID, STRANGER_ID = 1001, 1004, 1002, 1003, 6666
ADMIN_NAME = "Ann <&> O'Neil"  # hostile on purpose: every reply naming her must escape it
GROUP_CHAT_ID = -100500
CONFIRM_TIMEOUT_S = 30.0
PASSWORD_ENV = "REPLBOT_UNIT_PG_PASSWORD"
PASSWORD = "unit-pg-password-0123"


def config_toml(allowed_chat_ids: Sequence[int] = (), second_cluster: bool = True) -> str:
    """A config with four users and cluster 'main' (pg1 primary, replicas pg2 and pg3)."""
    dr = (
        '[[clusters]]\nname = "dr"\n\n'
        '[[clusters.nodes]]\nname = "dr1"\nrole = "primary"\ndsn = "host=dr1 user=bot"\n\n'
        '[[clusters.nodes]]\nname = "dr2"\nrole = "replica"\ndsn = "host=dr2 user=bot"\n'
        'slot = "dr2"\n\n'
        if second_cluster
        else ""
    )
    return (
        "[telegram]\n"
        'token = "123456:UNIT-fake-token-abcdef"\n'
        f"confirm_timeout = {CONFIRM_TIMEOUT_S}\n"
        f"allowed_chat_ids = [{', '.join(str(c) for c in allowed_chat_ids)}]\n\n"
        '[audit]\npath = "/tmp/replbot-unit-audit.sqlite3"\n\n'
        f'[[users]]\nid = {ADMIN_ID}\nname = "{ADMIN_NAME}"\nrole = "admin"\n\n'
        f'[[users]]\nid = {ADMIN2_ID}\nname = "bob-admin"\nrole = "admin"\n\n'
        f'[[users]]\nid = {OPERATOR_ID}\nname = "oscar-operator"\nrole = "operator"\n\n'
        f'[[users]]\nid = {VIEWER_ID}\nname = "vera-viewer"\nrole = "viewer"\n\n'
        '[[clusters]]\nname = "main"\n\n'
        '[[clusters.nodes]]\nname = "pg1"\nrole = "primary"\n'
        f'dsn = "host=db1 port=5432 user=bot dbname=postgres"\npassword_env = "{PASSWORD_ENV}"\n\n'
        '[[clusters.nodes]]\nname = "pg2"\nrole = "replica"\n'
        'dsn = "host=db2 port=5432 user=bot dbname=postgres"\nslot = "pg2"\n\n'
        '[[clusters.nodes]]\nname = "pg3"\nrole = "replica"\n'
        'dsn = "host=db3 port=5432 user=bot dbname=postgres"\nslot = "pg3"\n\n' + dr
    )


def make_config(allowed_chat_ids: Sequence[int] = (), second_cluster: bool = True) -> AppConfig:
    """Parse :func:`config_toml` through the real validator."""
    text = config_toml(allowed_chat_ids, second_cluster)
    return parse_config(tomllib.loads(text), {PASSWORD_ENV: PASSWORD})


def walsender(
    pid: int,
    application_name: str,
    slot_name: str | None,
    state: str | None = "streaming",
    client_addr: str | None = "10.0.0.2",
    lsn: str = "0/3000148",
    replay_lag_bytes: int | None = 0,
) -> WalSender:
    """A pg_stat_replication row with plausible values."""
    return WalSender(
        pid=pid,
        application_name=application_name,
        client_addr=client_addr,
        state=state,
        sent_lsn=lsn,
        write_lsn=lsn,
        flush_lsn=lsn,
        replay_lsn=lsn,
        write_lag_s=None,
        flush_lag_s=None,
        replay_lag_s=None,
        sync_state="async",
        slot_name=slot_name,
        replay_lag_bytes=replay_lag_bytes,
    )


def slot(name: str, active: bool, active_pid: int | None = None) -> SlotInfo:
    """A physical slot row."""
    return SlotInfo(
        name=name,
        slot_type="physical",
        active=active,
        active_pid=active_pid if active else None,
        restart_lsn="0/3000148",
        retained_bytes=16 * 1024 * 1024,
        wal_status="reserved",
        safe_wal_size=None,
    )


HEALTHY_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "listen_addresses": "*",
    "max_connections": "100",
    "max_worker_processes": "8",
    "max_prepared_transactions": "0",
    "max_locks_per_transaction": "64",
}


@dataclass
class FakePostgres:
    """The Postgres port on plain data; ``calls`` lists (method, node) of every call."""

    walsenders: dict[str, list[WalSender]] = field(default_factory=dict)
    slot_rows: dict[str, list[SlotInfo]] = field(default_factory=dict)
    settings_by_node: dict[str, dict[str, str]] = field(default_factory=dict)
    failures: dict[tuple[str, str], BaseException] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    statements: list[tuple[str, str, tuple[str | int, ...]]] = field(default_factory=list)

    @classmethod
    def healthy(cls) -> FakePostgres:
        """Every replica streaming through its slot, one inactive leftover slot on main."""
        return cls(
            walsenders={
                "pg1": [walsender(201, "pg2", "pg2"), walsender(202, "pg3", "pg3")],
                "dr1": [walsender(301, "dr2", "dr2")],
            },
            slot_rows={
                "pg1": [slot("pg2", True, 201), slot("pg3", True, 202), slot("old_slot", False)],
                "dr1": [slot("dr2", True, 301)],
            },
        )

    def fail(self, method: str, node: str, exc: BaseException) -> None:
        """Make ``method`` raise ``exc`` for ``node``."""
        self.failures[(method, node)] = exc

    def _enter(self, method: str, node: NodeConfig) -> None:
        self.calls.append((method, node.name))
        exc = self.failures.get((method, node.name))
        if exc is not None:
            raise exc

    async def snapshot(self, node: NodeConfig) -> NodeSnapshot:
        self._enter("snapshot", node)
        if node.role is NodeRole.PRIMARY:
            return NodeSnapshot(
                cluster=node.cluster,
                node=node.name,
                at=0.0,
                in_recovery=False,
                server_version="16.4",
                server_version_num=160004,
                timeline=1,
                lsn="0/3000148",
                walsenders=tuple(self.walsenders.get(node.name, [])),
                slots=tuple(self.slot_rows.get(node.name, [])),
            )
        return NodeSnapshot(
            cluster=node.cluster,
            node=node.name,
            at=0.0,
            in_recovery=True,
            server_version="16.4",
            server_version_num=160004,
            timeline=1,
            lsn="0/3000148",
            receiver=ReceiverInfo(
                status="streaming",
                slot_name=node.slot,
                received_tli=1,
                flushed_lsn="0/3000148",
                sender_host="db1",
                sender_port=5432,
                written_lsn="0/3000148",
            ),
            replay_delay_s=0.0,
        )

    async def settings(self, node: NodeConfig, names: Sequence[str]) -> dict[str, str]:
        self._enter("settings", node)
        values = self.settings_by_node.get(node.name, HEALTHY_SETTINGS)
        return {name: values[name] for name in names if name in values}

    async def replication_hba_rules(self, node: NodeConfig) -> list[HbaRule] | None:
        self._enter("replication_hba_rules", node)
        return [
            HbaRule(
                line_number=99,
                type="host",
                databases=("replication",),
                users=("repluser",),
                address="10.0.0.0/24",
                auth_method="scram-sha-256",
            )
        ]

    async def usage_counts(self, node: NodeConfig) -> tuple[int, int]:
        self._enter("usage_counts", node)
        return len(self.walsenders.get(node.name, [])), len(self.slot_rows.get(node.name, []))

    async def create_physical_slot(self, node: NodeConfig, slot_name: str) -> None:
        self._enter("create_physical_slot", node)
        rows = self.slot_rows.setdefault(node.name, [])
        if any(s.name == slot_name for s in rows):
            raise SlotAlreadyExists(Phrase.of("error.slot.exists", slot=slot_name, node=node.name))
        rows.append(slot(slot_name, False))

    async def drop_slot(self, node: NodeConfig, slot_name: str) -> None:
        self._enter("drop_slot", node)
        rows = self.slot_rows.setdefault(node.name, [])
        found = next((s for s in rows if s.name == slot_name), None)
        if found is None:
            raise SlotNotFound(Phrase.of("error.slot.not_found", slot=slot_name, node=node.name))
        if found.active:
            raise SlotActive(Phrase.of("error.slot.active", slot=slot_name, node=node.name))
        rows.remove(found)

    async def copy_physical_slot(self, node: NodeConfig, source: str, target: str) -> None:
        self._enter("copy_physical_slot", node)
        rows = self.slot_rows.setdefault(node.name, [])
        if not any(s.name == source for s in rows):
            raise SlotNotFound(Phrase.of("error.slot.not_found", slot=source, node=node.name))
        if any(s.name == target for s in rows):
            raise SlotAlreadyExists(Phrase.of("error.slot.exists", slot=target, node=node.name))
        rows.append(slot(target, False))

    async def total_database_size(self, node: NodeConfig) -> int:
        self._enter("total_database_size", node)
        return 42 * 1024 * 1024

    async def auto_conf_settings(self, node: NodeConfig, names: Sequence[str]) -> dict[str, str]:
        self._enter("auto_conf_settings", node)
        return {}

    async def execute(
        self, node: NodeConfig, statement: str, params: Sequence[str | int] = ()
    ) -> list[tuple[object, ...]]:
        self._enter("execute", node)
        self.statements.append((node.name, statement, tuple(params)))
        return []


class NoShells:
    """ShellConnector for tests that never reach a host: every connection fails."""

    async def connect(self, node: NodeConfig) -> RemoteShell:
        raise RemoteError(Phrase.of("error.remote.no_ssh", node=node.name))


class NoJobs:
    """JobStore with no rebuild jobs; creating or updating one is a test bug."""

    async def create(
        self,
        cluster: str,
        node: str,
        requested_by: int,
        confirmed_by: int | None,
        old_dir: str,
        failed_dir: str,
        rollback_slot: str,
        kind: str = "rebuild",
    ) -> RebuildJob:
        raise AssertionError("unit tests do not start rebuilds")

    async def update(
        self,
        job_id: int,
        *,
        state: RebuildState | None = None,
        step: str | None = None,
        detail: str | None = None,
        moved_id: str | None = None,
    ) -> RebuildJob:
        raise AssertionError("unit tests do not start rebuilds")

    async def holding_lock(self, cluster: str, node: str) -> RebuildJob | None:
        return None

    async def latest(self, cluster: str, node: str) -> RebuildJob | None:
        return None

    async def in_state(self, state: RebuildState) -> list[RebuildJob]:
        return []


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` on this clock: time jumps ``seconds`` ahead, nothing waits."""
        deadline = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, deadline)


class FakeAuditLog:
    """The AuditLog port as a list; ids count from 1."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.records: list[AuditRecord] = []
        self._clock = clock or FakeClock()

    async def append(self, record: AuditRecord) -> None:
        self.records.append(record)

    async def recent(self, limit: int) -> list[AuditEntry]:
        at = datetime.fromtimestamp(self._clock.time(), UTC)
        entries = [
            AuditEntry(
                id=index + 1,
                at=at,
                user_id=r.user_id,
                user_name=r.user_name,
                chat_id=r.chat_id,
                command=r.command,
                args=r.args,
                outcome=r.outcome,
                reason=r.reason,
                duration_ms=r.duration_ms,
            )
            for index, r in enumerate(self.records)
        ]
        return list(reversed(entries))[:limit]

    async def verify(self) -> AuditVerification:
        return AuditVerification(rows=len(self.records), ok=True)


@dataclass
class FakeChat:
    """The Chat port collecting what the bot sent, edited and toasted."""

    sent: list[Reply] = field(default_factory=list)
    edits: list[tuple[int, Reply]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    menus: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    async def send(self, reply: Reply) -> int:
        self.sent.append(reply)
        return len(self.sent)

    async def set_user_menu(self, user_id: int, commands: Mapping[str, str]) -> None:
        self.menus.append((user_id, dict(commands)))

    async def edit(self, message_id: int, reply: Reply) -> None:
        self.edits.append((message_id, reply))

    async def notify(self, text: str) -> None:
        self.notes.append(text)

    @property
    def replies(self) -> list[Reply]:
        """Everything shown in the chat: sent messages, then edited ones."""
        return self.sent + [reply for _, reply in self.edits]


@dataclass
class Bot:
    """A Dispatcher wired to fresh fakes, with helpers to type commands and press buttons."""

    config: AppConfig
    pg: FakePostgres
    audit: FakeAuditLog
    clock: FakeClock
    dispatcher: Dispatcher

    async def command(
        self,
        text: str,
        user_id: int = ADMIN_ID,
        chat_id: int | None = None,
        chat_type: str = "private",
        user_name: str = "telegram-name",
    ) -> FakeChat:
        """Dispatch ``text`` as typed by ``user_id``; return the chat with the replies."""
        chat = FakeChat()
        request = Request(
            user_id=user_id,
            user_name=user_name,
            chat_id=user_id if chat_id is None else chat_id,
            chat_type=chat_type,
            text=text,
        )
        await self.dispatcher.handle_command(request, chat)
        return chat

    async def press(
        self,
        data: str,
        user_id: int = ADMIN_ID,
        chat_id: int | None = None,
        chat_type: str = "private",
        message_id: int | None = 1,
    ) -> FakeChat:
        """Press the inline button carrying ``data``."""
        chat = FakeChat()
        request = Request(
            user_id=user_id,
            user_name="telegram-name",
            chat_id=user_id if chat_id is None else chat_id,
            chat_type=chat_type,
            button_data=data,
            message_id=message_id,
        )
        await self.dispatcher.handle_button(request, chat)
        return chat


def make_bot(
    config: AppConfig | None = None, pg: FakePostgres | None = None, jobs: JobStore | None = None
) -> Bot:
    """The real Dispatcher, services and command registry on top of the fakes."""
    config = config or make_config()
    pg = pg or FakePostgres.healthy()
    clock = FakeClock()
    audit = FakeAuditLog(clock)
    services = Services(
        config=config,
        authz=Authorizer(config.users, config.telegram.allowed_chat_ids),
        replication=ReplicationService(config, pg),
        confirmations=ConfirmationService(clock, config.telegram.confirm_timeout_s),
        rebuild=RebuildService(config, pg, NoShells(), jobs or NoJobs(), audit, clock),
        audit=audit,
        clock=clock,
    )
    return Bot(config, pg, audit, clock, Dispatcher(services, COMMANDS, ACTIONS))


# --- rebuild: a replica host and a job store on plain data -----------------------------------

REBUILD_KEYS = (
    'shell = "local"\ndata_dir = "/srv/pg2/data"\npg_bin_dir = "/usr/lib/postgresql/16/bin"\n'
    'start_command = "pg_ctl start -D /srv/pg2/data"\n'
    'stop_command = "pg_ctl stop -D /srv/pg2/data"\n'
    "keep_files = []\n"
    'replication = { host = "db1", port = 5432, user = "repl", passfile = "/srv/pgpass" }\n'
)


def rebuild_config() -> AppConfig:
    """:func:`make_config` with pg2 rebuildable (local shell, data in /srv/pg2/data)."""
    text = config_toml().replace('slot = "pg2"\n', 'slot = "pg2"\n' + REBUILD_KEYS, 1)
    return parse_config(tomllib.loads(text), {PASSWORD_ENV: PASSWORD})


class FakeJobStore:
    """The JobStore port in memory, with the per-node lock."""

    def __init__(self, clock: FakeClock) -> None:
        self.jobs: dict[int, RebuildJob] = {}
        self._clock = clock

    async def create(
        self,
        cluster: str,
        node: str,
        requested_by: int,
        confirmed_by: int | None,
        old_dir: str,
        failed_dir: str,
        rollback_slot: str,
        kind: str = "rebuild",
    ) -> RebuildJob:
        if await self.holding_lock(cluster, node) is not None:
            raise RebuildRefused(Phrase.of("error.job.busy_unknown", node=node))
        now = self._clock.time()
        job = RebuildJob(
            id=len(self.jobs) + 1,
            cluster=cluster,
            node=node,
            state=RebuildState.RUNNING,
            step="starting",
            requested_by=requested_by,
            confirmed_by=confirmed_by,
            old_dir=old_dir,
            failed_dir=failed_dir,
            rollback_slot=rollback_slot,
            started_at=now,
            updated_at=now,
            kind=kind,
        )
        self.jobs[job.id] = job
        return job

    async def update(
        self,
        job_id: int,
        *,
        state: RebuildState | None = None,
        step: str | None = None,
        detail: str | None = None,
        moved_id: str | None = None,
    ) -> RebuildJob:
        job = self.jobs[job_id]
        changes = {"state": state, "step": step, "detail": detail, "moved_id": moved_id}
        job = dataclasses.replace(job, **{k: v for k, v in changes.items() if v is not None})
        self.jobs[job_id] = job
        return job

    async def holding_lock(self, cluster: str, node: str) -> RebuildJob | None:
        held = [
            j
            for j in self.jobs.values()
            if (j.cluster, j.node) == (cluster, node) and j.state.holds_lock
        ]
        return held[-1] if held else None

    async def latest(self, cluster: str, node: str) -> RebuildJob | None:
        mine = [j for j in self.jobs.values() if (j.cluster, j.node) == (cluster, node)]
        return mine[-1] if mine else None

    async def in_state(self, state: RebuildState) -> list[RebuildJob]:
        return [j for j in self.jobs.values() if j.state is state]


Gate = Callable[[str], Awaitable[None]]


async def _open_gate(_: str) -> None:
    return None


class FakeHost:
    """A replica's host as data: directories (path -> "device:inode"), the server (the
    identity of the directory it runs on), and the slot it holds on the primary.

    Commands are recognised by comparing with what :class:`Commands` produces for the job, so
    the fake follows the plan's own text; an unknown command is a test failure.
    ``fail_start`` lists directory identities whose start fails; ``gate`` is awaited before
    every command and every close (a test blocks it to land a cancel there).
    """

    OLD_ID = "8:100"

    def __init__(self, pg: FakePostgres, node: NodeConfig, old_dir: str, failed_dir: str) -> None:
        self.pg = pg
        self.cmd = Commands.for_job(node, old_dir, failed_dir)
        self.dirs: dict[str, str] = {str(self.cmd.data_dir): self.OLD_ID}
        self.running_on: str | None = self.OLD_ID
        self.fail_start: set[str] = set()
        self.gate: Gate = _open_gate
        self.commands: list[str] = []
        self.moves: list[tuple[str, str]] = []
        self._next_inode = 200

    @property
    def data(self) -> str:
        return str(self.cmd.data_dir)

    def _set_slot_active(self, active: bool) -> None:
        rows = self.pg.slot_rows.get("pg1", [])
        self.pg.slot_rows["pg1"] = [
            dataclasses.replace(s, active=active, active_pid=201 if active else None)
            if s.name == self.cmd.slot
            else s
            for s in rows
        ]

    async def connect(self, node: NodeConfig) -> FakeHostShell:
        return FakeHostShell(self)

    def answer(self, command: str) -> CommandResult:
        cmd, data = self.cmd, self.data
        ok = CommandResult(0, "", "")
        if command in (cmd.stop(), cmd.stop_unless_stopped()):
            self.running_on = None
            self._set_slot_active(False)
            return ok
        if command == cmd.server_status():
            running = self.running_on is not None and self.dirs.get(data) == self.running_on
            return CommandResult(0 if running else 3, "", "")
        running = self.running_on is not None and self.dirs.get(data) == self.running_on
        if command == cmd.start_unless_running() and running:
            return ok
        if command in (cmd.start(), cmd.start_unless_running()):
            ident = self.dirs.get(data)
            if ident is None or ident in self.fail_start:
                return CommandResult(1, "", "pg_ctl: could not start server")
            self.running_on = ident
            self._set_slot_active(True)
            return ok
        if command == cmd.data_dir_id():
            return (
                CommandResult(0, self.dirs[data] + "\n", "")
                if data in self.dirs
                else (CommandResult(1, "", "stat: cannot stat"))
            )
        for move, source, target in (
            (cmd.move_aside(), cmd.data_dir, cmd.old_dir),
            (cmd.set_aside_new(), cmd.data_dir, cmd.failed_dir),
            (cmd.put_back_old(), cmd.old_dir, cmd.data_dir),
        ):
            if command == move:
                if str(target) in self.dirs:
                    return CommandResult(DIRECTORY_EXISTS_EXIT, "", f"{target} already exists")
                if str(source) not in self.dirs:
                    return CommandResult(1, "", f"mv: cannot stat {source}")
                self.dirs[str(target)] = self.dirs.pop(str(source))
                self.moves.append((str(source), str(target)))
                return ok
        if command == cmd.directories():
            lines = [
                f"{label} {self.dirs[str(path)]}"
                for label, path in (
                    ("data", cmd.data_dir),
                    ("old", cmd.old_dir),
                    ("failed", cmd.failed_dir),
                )
                if str(path) in self.dirs
            ]
            return CommandResult(0, "".join(line + "\n" for line in lines), "")
        if command in (cmd.kill_leftover_basebackup(), cmd.leftover_basebackup()):
            return ok
        if command == cmd.remove_old():  # --cleanup after a success
            self.dirs.pop(str(cmd.old_dir), None)
            return ok
        if command == cmd.server_log_tail():
            return CommandResult(0, "FATAL:  the new copy does not start\n", "")
        raise AssertionError(f"FakeHost: unexpected command {command!r}")

    def basebackup(self) -> CommandResult:
        if self.data in self.dirs:
            return CommandResult(1, "pg_basebackup: error: directory exists", "")
        self.dirs[self.data] = f"8:{self._next_inode}"
        self._next_inode += 1
        return CommandResult(0, "100/100 kB (100%)\n", "")


class FakeHostShell:
    """One RemoteShell session on a :class:`FakeHost`."""

    label = "fake-host"

    def __init__(self, host: FakeHost) -> None:
        self.host = host

    async def run(self, command: str, timeout: float) -> CommandResult:
        await self.host.gate(command)
        self.host.commands.append(command)
        return self.host.answer(command)

    async def stream(
        self, command: str, on_output: Callable[[str], Awaitable[None]], timeout: float | None
    ) -> CommandResult:
        await self.host.gate(command)
        self.host.commands.append(command)
        assert command == self.host.cmd.basebackup(), command
        result = self.host.basebackup()
        await on_output(result.stdout)
        return result

    async def close(self) -> None:
        await self.host.gate("close")
