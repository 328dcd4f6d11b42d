"""Helpers shared by the core-bot integration tests (not a test module).

* :func:`scratch_set` — a separate, disposable replication set for tests that stop nodes or
  change settings; its passwords go into the LEDGER before it starts.
* :func:`telegram_for` — the real PTB application over the fake Bot API, serving the bot's
  dispatcher on top of any replication set (the ``telegram`` fixture is bound to the shared set).
* helpers to wait for replies and audit rows, and to run and stop client programs (pg_basebackup,
  pg_receivewal) as the server OS user, by PID.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bot.app import open_runtime, redactor_for
from bot.logsetup import install_redaction
from bot.models import AuditEntry
from bot.sandbox import LocalReplicationSet, PgBinaries, server_os_user
from tests.conftest import (
    LEDGER,
    TelegramHarness,
    make_config,
    ptb_serving,
    short_tmpdir,
    with_test_settings,
)
from tests.fakebotapi import FakeBotApi, RecordedCall

LSN_RE = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")


def lsn_to_int(lsn: str) -> int:
    """'0/3000060' -> 50331744."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


_INITDB_TEMPLATES: dict[tuple[str, tuple[str, ...]], Path] = {}


def _drop_templates() -> None:
    for template in _INITDB_TEMPLATES.values():
        shutil.rmtree(template.parent.parent, ignore_errors=True)


atexit.register(_drop_templates)


class TemplateInitdb(LocalReplicationSet):
    """A set whose primary starts from a copy (``cp -a``) of a data directory that initdb made
    once per installation and initdb arguments in this test session, not from an initdb of
    its own; everything after initdb (config, roles, slots, pg_basebackup) is unchanged.

    All such sets of a session share one system identifier: a test that puts two sets in one
    bot config (and so could mistake one cluster for the other) makes them with
    ``scratch_set(..., fresh_initdb=True)``."""

    def _run(
        self,
        argv: Sequence[str],
        *,
        what: str,
        log: Path | None = None,
        input_text: str | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        if what != "initdb":
            return super()._run(
                argv, what=what, log=log, input_text=input_text, timeout=timeout, check=check
            )
        at = list(argv).index("-D") + 1
        key = (str(self.binaries.bindir), self.initdb_args)
        template = _INITDB_TEMPLATES.get(key)
        if template is None:
            template = server_owned_dir(short_tmpdir("rbtpl"), "initdb") / "data"
            made = [*argv[:at], str(template), *argv[at + 1 :]]
            super()._run(made, what=what, log=log, timeout=timeout, check=check)
            _INITDB_TEMPLATES[key] = template
        subprocess.run(["cp", "-a", str(template), argv[at]], check=True, timeout=timeout)
        return subprocess.CompletedProcess(list(argv), 0, "", "")


@contextlib.contextmanager
def scratch_set(
    binaries: PgBinaries, replicas: int = 1, *, fresh_initdb: bool = False, **kwargs: Any
) -> Iterator[LocalReplicationSet]:
    """A started primary + replica set of its own, destroyed afterwards (its primary copied
    from the session's initdb template, see :class:`TemplateInitdb`, unless ``fresh_initdb``)."""
    base = short_tmpdir()
    kind = LocalReplicationSet if fresh_initdb else TemplateInitdb
    rset = kind(base / "pg", binaries, replicas=replicas, **with_test_settings(kwargs))
    LEDGER.secrets.update({rset.bot_password, rset.repl_password})
    try:
        rset.start()
        yield rset
    finally:
        rset.destroy()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.asynccontextmanager
async def telegram_for(rset: LocalReplicationSet) -> AsyncIterator[TelegramHarness]:
    """Like the ``telegram`` fixture, over ``rset``; fake API and audit file go to the LEDGER."""
    base = short_tmpdir("rba")
    config = make_config(rset, base / "audit.sqlite3")
    LEDGER.audit_paths.append(config.audit.path)
    redactor = redactor_for(config)
    install_redaction(redactor)
    runtime = await open_runtime(config, redactor)
    LEDGER.secrets.update(redactor.secrets)  # the audit key open_runtime made is one of them
    api = FakeBotApi()
    LEDGER.secrets.add(api.token)
    LEDGER.fake_apis.append(api)
    api.start()
    try:
        async with ptb_serving(runtime, api) as harness:
            yield harness
    finally:
        api.stop()
        await runtime.close()


async def reply_call(
    harness: TelegramHarness,
    user_id: int,
    text: str,
    chat_id: int | None = None,
    timeout: float = 15,
    **kwargs: object,
) -> RecordedCall:
    """Send ``text`` as ``user_id``; return the first sendMessage call to that chat (any status)."""
    mark = harness.send(user_id, text, chat_id, **kwargs)
    target = chat_id if chat_id is not None else user_id
    return await harness.api.await_for(
        "sendMessage", lambda c: c.params.get("chat_id") == target, timeout=timeout, after=mark
    )


def plain(call: RecordedCall) -> str:
    """The text Telegram stored for an accepted sendMessage/editMessageText."""
    assert call.ok, f"{call.method} was rejected: {call.status} {call.response}"
    result = call.result
    assert isinstance(result, dict)
    return str(result.get("text", ""))


async def audit_rows(harness: TelegramHarness, count: int, timeout: float = 10) -> list[AuditEntry]:
    """Wait until the audit log holds at least ``count`` rows; return them oldest first.

    Rows are written after the reply, so a test that saw a reply may have to wait for its row.
    """
    deadline = time.monotonic() + timeout
    while True:
        rows = await harness.runtime.services.audit.recent(10_000)
        if len(rows) >= count:
            return list(reversed(rows))
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} audit rows within {timeout}s, got {rows!r}")
        await asyncio.sleep(0.02)


async def wait_until(
    probe: Callable[[], Any], what: str, timeout: float = 20, interval: float = 0.05
) -> Any:
    """Poll the (blocking) ``probe`` in a thread until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await asyncio.to_thread(probe)
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- client processes


def server_owned_dir(parent: Path, name: str) -> Path:
    """An empty directory the server OS user owns (for pg_basebackup / pg_receivewal)."""
    path = parent / name
    path.mkdir(mode=0o700)
    user = server_os_user()
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def start_as_server(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the background as the server OS user (via runuser when root)."""
    user = server_os_user()
    full = ["runuser", "-u", user, "--", *argv] if user is not None else list(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.Popen(
        full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd="/"
    )


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_with_cmdline(fragment: str) -> list[int]:
    """Live processes whose command line contains ``fragment`` (a unique temp path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmd and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def stop_started(proc: subprocess.Popen[bytes], marker: str, timeout: float = 15) -> None:
    """Stop a client we started, and every process of it whose cmdline has ``marker``
    (e.g. pg_basebackup's forked WAL streamer), by PID: SIGTERM, then SIGKILL.

    The client itself is signalled, not runuser: runuser would wait 2 s before it kills.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        clients = [pid for pid in pids_with_cmdline(marker) if pid != proc.pid]
        targets = clients if clients and sig == signal.SIGTERM else [*clients, proc.pid]
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None and not pids_with_cmdline(marker):
                return
            time.sleep(0.02)
    raise AssertionError(f"processes {pids_with_cmdline(marker)} of {marker} did not stop")
