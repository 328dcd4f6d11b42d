"""The test bed of the /rebuild integration tests (not a test module).

A :class:`RebuildBed` is a scratch primary + replica (``pg1`` → ``pg2``, slot ``pg2``, config
outside the data directories) plus a real OpenSSH server on loopback that logs in as the
server OS user. The replica's config is the one an admin would write for a remote host:
``shell = "ssh"`` with that sshd's endpoint, absolute PostgreSQL binaries, pg_ctl start/stop
commands and a ``replication`` source with a passfile — the same keys as
:func:`bot.demo.rebuild_keys`, with SSH instead of the local shell. Configs go through the real
validator; every password, fake Bot API and audit file is recorded in the LEDGER for the final
secret scan.

The probes (``psql``, directories, ``/proc``) are blocking: call them with ``asyncio.to_thread``
from async tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shlex
import shutil
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import Runtime, open_runtime, redactor_for
from bot.config import AppConfig, parse_config
from bot.logsetup import install_redaction
from bot.models import AuditEntry, RebuildProgress
from bot.ports import Clock
from bot.sandbox import (
    LocalNode,
    LocalReplicationSet,
    PgBinaries,
    SandboxError,
    server_os_user,
)
from tests.conftest import (
    ADMIN_ID,
    LEDGER,
    OPERATOR_ID,
    VIEWER_ID,
    TelegramHarness,
    ptb_serving,
    short_tmpdir,
)
from tests.fakebotapi import FakeBotApi, RecordedCall
from tests.integration._helpers import alive, lsn_to_int, scratch_set
from tests.sshd import LocalSshd

SECOND_ADMIN_ID = 1004
PASSWORD_ENV = "REPLBOT_TEST_DB_PASSWORD"
CLUSTER, REPLICA, PRIMARY = "main", "pg2", "pg1"
MARKER = "replbot-test-marker"


def toml_string(value: str) -> str:
    """A TOML basic string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class RebuildBed:
    """A primary, a replica reached over SSH, and the bot's view of them."""

    pgset: LocalReplicationSet
    sshd: LocalSshd
    base: Path  # a short directory of this bed: configs, audit files, scripts

    # ------------------------------------------------------------------ config

    @property
    def replica(self) -> LocalNode:
        """The sandbox node pg2."""
        return self.pgset.node(REPLICA)

    def node_keys(
        self,
        *,
        max_rate: str | None = None,
        passfile: Path | None = None,
        start_command: str | None = None,
        data_dir: Path | None = None,
        application_name: str | None = None,
    ) -> str:
        """The rebuild keys of pg2: like bot.demo.rebuild_keys, but over the bed's sshd."""
        ep = self.sshd.endpoint
        assert ep is not None
        node, primary = self.replica, self.pgset.primary
        start = start_command or shlex.join(self.pgset.pg_ctl_start_command(REPLICA))
        text = (
            f'slot = "{node.slot}"\n'
            'shell = "ssh"\n'
            f"data_dir = {toml_string(str(data_dir or node.data_dir))}\n"
            f"conf_dir = {toml_string(str(node.conf_dir))}\n"
            f"pg_bin_dir = {toml_string(str(self.pgset.binaries.bindir))}\n"
            f"start_command = {toml_string(start)}\n"
            "stop_command = "
            f"{toml_string(shlex.join(self.pgset.pg_ctl_stop_command(REPLICA)))}\n"
            f"log_file = {toml_string(str(node.log_file))}\n"
            "keep_files = []\n"
            f'replication = {{ host = "127.0.0.1", port = {primary.port}, '
            f'user = "{self.pgset.repl_user}", '
            f"passfile = {toml_string(str(passfile or self.pgset.passfile))} }}\n"
            f'ssh = {{ host = "{ep.host}", port = {ep.port}, user = "{ep.user}", '
            f"key_file = {toml_string(str(ep.key_file))}, "
            f"known_hosts = {toml_string(str(ep.known_hosts))} }}\n"
        )
        if max_rate is not None:
            text += f'max_rate = "{max_rate}"\n'
        if application_name is not None:
            text += f"application_name = {toml_string(application_name)}\n"
        return text

    def config_text(
        self,
        audit_path: Path,
        *,
        api: FakeBotApi | None = None,
        confirm_timeout: float = 30,
        alert_chat_ids: tuple[int, ...] = (),
        progress_interval: float = 0.5,
        verify_timeout: float = 60,
        extra: str = "",
        **node: Any,
    ) -> str:
        """The whole TOML config: four users (two admins), cluster main, pg2 rebuildable.

        ``extra`` is TOML placed before the users (e.g. a ``[monitor]`` table)."""
        telegram = f"confirm_timeout = {confirm_timeout}\n"
        if api is not None:
            telegram += f'token = "{api.token}"\nbase_url = "{api.base_url}"\n'
        if alert_chat_ids:
            telegram += f"alert_chat_ids = [{', '.join(str(c) for c in alert_chat_ids)}]\n"
        users = "".join(
            f'[[users]]\nid = {uid}\nname = "{name}"\nrole = "{role}"\n\n'
            for uid, name, role in (
                (ADMIN_ID, "alice-admin", "admin"),
                (OPERATOR_ID, "oscar-operator", "operator"),
                (VIEWER_ID, "vera-viewer", "viewer"),
                (SECOND_ADMIN_ID, "bob-admin", "admin"),
            )
        )
        primary, replica = self.pgset.primary, self.replica
        return (
            f"[telegram]\n{telegram}\n"
            f"[rebuild]\nprogress_interval = {progress_interval}\n"
            f"verify_timeout = {verify_timeout}\ncommand_timeout = 60\n\n"
            f"[audit]\npath = {toml_string(str(audit_path))}\n\n"
            f"{extra}\n"
            f"{users}"
            '[[clusters]]\nname = "main"\n\n'
            f'[[clusters.nodes]]\nname = "{primary.name}"\nrole = "primary"\n'
            f'dsn = "{self.pgset.dsn(primary.name)}"\npassword_env = "{PASSWORD_ENV}"\n\n'
            f'[[clusters.nodes]]\nname = "{replica.name}"\nrole = "replica"\n'
            f'dsn = "{self.pgset.dsn(replica.name)}"\npassword_env = "{PASSWORD_ENV}"\n'
            + self.node_keys(**node)
        )

    def environ(self) -> dict[str, str]:
        """The environment the config's password_env refers to."""
        return {PASSWORD_ENV: self.pgset.bot_password}

    def config(self, **options: Any) -> AppConfig:
        """A validated config with a fresh audit file (recorded for the secret scan)."""
        audit = Path(short_tmpdir("rba")) / "audit.sqlite3"
        LEDGER.audit_paths.append(audit)
        return parse_config(tomllib.loads(self.config_text(audit, **options)), self.environ())

    # ------------------------------------------------------------------ probes

    def psql(self, node: str, sql: str) -> str:
        """SQL as the superuser over the unix socket."""
        return self.pgset.psql(node, sql)

    def slot_names(self) -> list[str]:
        """Replication slots on the primary."""
        return self.psql(
            PRIMARY, "SELECT slot_name FROM pg_replication_slots ORDER BY slot_name"
        ).splitlines()

    def slot_active(self, name: str = REPLICA) -> bool:
        """True if slot ``name`` exists on the primary and is in use."""
        out = self.psql(
            PRIMARY, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{name}'"
        )
        return out == "t"

    def slot_holder(self, slot: str = REPLICA) -> str:
        """``application_name|state|sync_state`` of the primary's walsender holding ``slot``
        ('' when no walsender holds it)."""
        return self.psql(
            PRIMARY,
            "SELECT r.application_name, r.state, r.sync_state"
            "  FROM pg_stat_replication r"
            "  JOIN pg_replication_slots s ON s.active_pid = r.pid"
            f" WHERE s.slot_name = '{slot}'",
        )

    def receiver_status(self) -> str:
        """pg_stat_wal_receiver.status of pg2 ('' if none, 'down' if it does not answer)."""
        if not self.pgset.is_running(REPLICA):
            return "down"
        try:
            return self.psql(REPLICA, "SELECT status FROM pg_stat_wal_receiver")
        except SandboxError:  # a replica that does not answer (yet)
            return "down"

    def streams(self) -> bool:
        """pg2 streams through its slot (walreceiver and the primary's view agree)."""
        return self.receiver_status() == "streaming" and self.slot_active(REPLICA)

    def wait_streaming(self, timeout: float = 60) -> None:
        """Until pg2 streams with slot pg2 active."""
        self.pgset.wait_streaming(REPLICA, timeout)

    def moved_dirs(self, kind: str) -> list[Path]:
        """The data.replbot-<kind>-* siblings of pg2's data directory."""
        data = self.replica.data_dir
        return sorted(data.parent.glob(f"{data.name}.replbot-{kind}-*"))

    def put_marker(self) -> str:
        """A file in pg2's data directory that only the old data has; returns its content."""
        content = f"old data of pg2 {time.time_ns()}"
        path = self.replica.data_dir / MARKER
        path.write_text(content)
        user = server_os_user()
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return content

    def marker(self, data_dir: Path | None = None) -> str | None:
        """The marker's content in ``data_dir`` (pg2's data directory by default)."""
        path = (data_dir or self.replica.data_dir) / MARKER
        try:
            return path.read_text()
        except FileNotFoundError:
            return None

    def basebackup_pids(self) -> list[int]:
        """Live pg_basebackup processes (main or WAL-streaming child) writing into pg2's data
        directory or its moved-aside copies, found in /proc."""
        data = str(self.replica.data_dir)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                argv
                and os.path.basename(argv[0].decode(errors="replace")) == "pg_basebackup"
                and any(data in a.decode(errors="replace") for a in argv[1:])
                and alive(int(entry.name))
            ):
                found.append(int(entry.name))
        return found

    def own_file(self, path: Path, text: str) -> Path:
        """Write ``text`` to ``path`` (0600), owned by the server OS user."""
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        user = server_os_user()
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return path

    def slot_lsns(self) -> dict[str, int]:
        """restart_lsn of every slot on the primary, as integers (slots without one left out)."""
        out = self.psql(
            PRIMARY,
            "SELECT slot_name, restart_lsn FROM pg_replication_slots WHERE restart_lsn IS NOT NULL",
        )
        return {
            name: lsn_to_int(lsn) for name, lsn in (line.split("|") for line in out.splitlines())
        }

    def wal_segment(self, lsn: int) -> int:
        """The number of the WAL segment holding ``lsn`` on the primary."""
        size = int(
            self.psql(PRIMARY, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
        )
        return lsn // size

    def redo_lsn(self) -> int:
        """Where crash recovery of the primary would start (its last checkpoint's redo)."""
        return lsn_to_int(self.psql(PRIMARY, "SELECT redo_lsn FROM pg_control_checkpoint()"))

    def wal_file_exists(self, lsn: int) -> bool:
        """True if the primary's pg_wal still holds the segment file of ``lsn``."""
        text = f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
        return (
            self.psql(
                PRIMARY,
                f"SELECT count(*) FROM pg_ls_waldir() WHERE name = pg_walfile_name('{text}')",
            )
            == "1"
        )

    def basebackup_walsenders(self) -> list[int]:
        """PIDs of walsenders serving a pg_basebackup on the primary: the one sending files
        (state ``backup``) and its WAL stream, which never reports a replay position (a
        standby does). The backup runs under the replica's application_name, so the name
        tells nothing."""
        out = self.psql(
            PRIMARY,
            "SELECT pid FROM pg_stat_replication WHERE state = 'backup' OR replay_lsn IS NULL",
        )
        return [int(p) for p in out.split()]

    def bytes_streamed(self) -> int:
        """Bytes a running base backup has sent so far (0 when none runs)."""
        out = self.psql(
            PRIMARY, "SELECT coalesce(max(backup_streamed), 0) FROM pg_stat_progress_basebackup"
        )
        return int(out or 0)


@contextlib.contextmanager
def rebuild_bed(binaries: PgBinaries, **settings: Any) -> Iterator[RebuildBed]:
    """A started bed; servers and sshd are stopped by their own APIs afterwards."""
    with scratch_set(binaries, **settings) as rset:
        base = short_tmpdir("rbb")
        sshd = LocalSshd(base / "sshd")
        try:
            sshd.start()
            yield RebuildBed(rset, sshd, base)
        finally:
            sshd.stop()
            shutil.rmtree(base, ignore_errors=True)


def restore_streaming(bed: RebuildBed) -> None:
    """Bring a shared bed back after a test that stopped a node: both servers running, pg2
    streaming through slot pg2, no other slot, nothing moved aside. Raises if it cannot be
    (the next test would otherwise start from a broken bed)."""
    for name in (PRIMARY, REPLICA):
        if not bed.pgset.is_running(name):
            bed.pgset.start_node(name)
    bed.wait_streaming()
    assert bed.slot_names() == [REPLICA], bed.slot_names()
    assert bed.moved_dirs("old") == [] and bed.moved_dirs("failed") == []


# ---------------------------------------------------------------------- the bot over the bed


@contextlib.asynccontextmanager
async def opened(config: AppConfig, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """The bot's runtime for ``config`` (redaction installed like the bot does)."""
    redactor = redactor_for(config)
    install_redaction(redactor)
    runtime = await open_runtime(config, redactor, clock)
    try:
        yield runtime
    finally:
        await runtime.close()


@contextlib.asynccontextmanager
async def chat_for(runtime: Runtime) -> AsyncIterator[TelegramHarness]:
    """The real PTB application polling a fake Bot API, serving ``runtime``'s dispatcher."""
    api = FakeBotApi()
    LEDGER.secrets.add(api.token)
    LEDGER.fake_apis.append(api)
    api.start()
    try:
        async with ptb_serving(runtime, api) as harness:
            yield harness
    finally:
        api.stop()


class Progresses(list[RebuildProgress]):
    """A progress sink that keeps everything a job reported."""

    async def __call__(self, progress: RebuildProgress) -> None:
        self.append(progress)


def text_of(call: RecordedCall) -> str:
    """The text Telegram stored for an accepted sendMessage/editMessageText."""
    assert call.ok, f"{call.method} was rejected: {call.status} {call.response}"
    return str(call.result.get("text", ""))


def button_data(call: RecordedCall) -> list[str]:
    """callback_data of the inline buttons of a sendMessage call."""
    markup = call.params.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


async def next_message(
    api: FakeBotApi,
    chat_id: int,
    after: int,
    contains: str = "",
    method: str = "sendMessage",
    timeout: float = 30,
) -> RecordedCall:
    """The first ``method`` call to ``chat_id`` after index ``after`` whose stored text
    contains ``contains``."""

    def match(call: RecordedCall) -> bool:
        return (
            str(call.params.get("chat_id")) == str(chat_id)
            and call.ok
            and contains in str(call.result.get("text", ""))
        )

    return await api.await_for(method, match, timeout=timeout, after=after)


async def ask_and_confirm(
    api: FakeBotApi, user_id: int = ADMIN_ID, chat_id: int | None = None, node: str = REPLICA
) -> tuple[RecordedCall, str]:
    """``/rebuild NODE`` typed by ``user_id``: the confirmation message and its confirm data."""
    chat = user_id if chat_id is None else chat_id
    mark = api.mark()
    api.push_message(
        user_id, f"/rebuild {node}", chat_id=chat, chat_type="private" if chat > 0 else "group"
    )
    call = await next_message(api, chat, mark, contains="Replace the data of")
    data = button_data(call)
    assert data and data[0].startswith("cf:"), call.params
    return call, data[0]


def press(api: FakeBotApi, user_id: int, data: str, message: RecordedCall) -> int:
    """``user_id`` presses the button ``data`` under ``message``; returns the call mark."""
    mark = api.mark()
    chat_id = int(message.params["chat_id"])
    api.push_callback(user_id, data, int(message.result["message_id"]), chat_id=chat_id)
    return mark


async def wait_for_step(
    runtime: Runtime, step: str, timeout: float = 60, with_bytes: bool = True
) -> None:
    """Until pg2's running job reports ``step`` (for basebackup: with bytes copied)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        progress = runtime.services.rebuild.progress_of(CLUSTER, REPLICA)
        seen = progress
        if progress is not None and progress.step == step:
            if step != "basebackup" or not with_bytes:
                return
            if progress.backup is not None and progress.backup.done_kb > 0:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"job did not reach step {step} within {timeout}s (last: {seen})")


async def audit_of(runtime: Runtime) -> list[AuditEntry]:
    """All audit rows, oldest first."""
    return list(reversed(await runtime.services.audit.recent(10_000)))


async def probe(fn: Any, *args: Any) -> Any:
    """Run a blocking probe of the bed in a thread."""
    return await asyncio.to_thread(fn, *args)
