"""A replication set whose replica has no slot (not a test module).

:class:`SlotlessReplicationSet` is a :class:`bot.sandbox.LocalReplicationSet` whose replica
``pg2`` was made by ``pg_basebackup`` without ``--slot`` (so ``-R`` writes no
``primary_slot_name``) and streams under its ``cluster_name``. The primary keeps little WAL
(``wal_keep_size`` 64MB, ``max_wal_size`` = ``min_wal_size`` = 32MB), so a few
``pg_switch_wal()`` + ``CHECKPOINT`` rounds recycle what a stopped replica needs.

The bot's role gets what /attachslot and /detachslot need on PostgreSQL 15+:
``GRANT ALTER SYSTEM ON PARAMETER primary_slot_name`` and ``EXECUTE`` on ``pg_reload_conf()``
(granted on the primary; the catalog is replicated). It already is in ``pg_monitor``
(``pg_ls_waldir()``) and has ``REPLICATION`` (slots).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.sandbox import LocalReplicationSet, PgBinaries, SandboxError
from tests.conftest import LEDGER, short_tmpdir, with_test_settings
from tests.integration._helpers import TemplateInitdb

SMALL_WAL = {"wal_keep_size": "64MB", "max_wal_size": "32MB", "min_wal_size": "32MB"}
BOT_GRANTS = (
    "GRANT ALTER SYSTEM ON PARAMETER primary_slot_name TO {bot};"
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO {bot};"
)


class SlotlessReplicationSet(TemplateInitdb):
    """Primary ``pg1`` + replica ``pg2`` streaming without a replication slot."""

    def __init__(self, base_dir: Path, binaries: PgBinaries, **kwargs: Any) -> None:
        settings = {**SMALL_WAL, **kwargs.pop("settings", {})}
        super().__init__(base_dir, binaries, replicas=1, settings=settings, **kwargs)
        self._nodes["pg2"] = dataclasses.replace(self._nodes["pg2"], slot=None)

    def basebackup_command(self, name: str, target_dir: Path) -> list[str]:
        """pg_basebackup of the base class, without ``--slot``."""
        p = self.primary
        conn = (
            f"host=127.0.0.1 port={p.port} user={self.repl_user} "
            f"passfile={self.passfile} connect_timeout=10"
        )
        return [
            str(self.binaries.exe("pg_basebackup")), "-d", conn, "-D", str(target_dir),
            "--wal-method=stream", "--write-recovery-conf", "--checkpoint=fast", "--no-sync",
        ]  # fmt: skip

    def _create_roles(self) -> None:
        bot, repl = self.bot_user, self.repl_user
        self.psql(
            self.primary.name,
            f"CREATE ROLE {bot} LOGIN REPLICATION PASSWORD '{self.bot_password}' "
            "IN ROLE pg_monitor;"
            f"GRANT SELECT ON pg_catalog.pg_hba_file_rules TO {bot};"
            f"GRANT EXECUTE ON FUNCTION pg_catalog.pg_hba_file_rules() TO {bot};"
            f"CREATE ROLE {repl} LOGIN REPLICATION PASSWORD '{self.repl_password}';"
            + BOT_GRANTS.format(bot=bot),
        )

    def wait_streaming(self, name: str, timeout: float = 30) -> None:
        """Until ``name``'s WAL receiver streams and the primary's walsender for it does."""
        deadline = time.monotonic() + timeout
        check = (
            "SELECT count(*) FROM pg_stat_replication "
            f"WHERE application_name = '{name}' AND state = 'streaming'"
        )
        while True:
            with contextlib.suppress(SandboxError):
                status = self.psql(name, "SELECT status FROM pg_stat_wal_receiver", timeout=10)
                if status == "streaming" and self.psql(self.primary.name, check) == "1":
                    return
            if time.monotonic() > deadline:
                raise SandboxError(f"{name} not streaming after {timeout:.0f}s")
            time.sleep(0.05)

    # --- helpers for the tests ------------------------------------------------------------

    def write_and_recycle(self, rounds: int = 1) -> None:
        """Write a little, switch to a new segment and checkpoint, ``rounds`` times: with the
        small WAL settings the oldest segments are removed or recycled."""
        for _ in range(rounds):
            self.psql(
                "pg1",
                "CREATE TABLE IF NOT EXISTS filler (x int);"
                "INSERT INTO filler SELECT generate_series(1, 2000);"
                "SELECT pg_switch_wal(); CHECKPOINT;",
            )

    def oldest_segment(self) -> str:
        """The oldest WAL segment in the primary's pg_wal (by log/segment number)."""
        return self.psql(
            "pg1",
            "SELECT name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' "
            "ORDER BY substr(name, 9) LIMIT 1",
        )


def grant_slot_privileges(rset: LocalReplicationSet, timeout: float = 30) -> None:
    """The grants /attachslot and /detachslot need (PostgreSQL 15+), on the primary; returns
    once every running replica has replayed them (the bot checks them on the replica: without
    the wait a loaded machine saw the old catalog there)."""
    rset.psql(rset.primary.name, BOT_GRANTS.format(bot=rset.bot_user))
    lsn = rset.psql(rset.primary.name, "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    for replica in rset.replicas:
        if not rset.is_running(replica.name):
            continue
        while rset.psql(replica.name, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") != "t":
            if time.monotonic() > deadline:
                raise SandboxError(f"{replica.name} did not replay the grants within {timeout}s")
            time.sleep(0.05)


@contextlib.contextmanager
def slotless_set(binaries: PgBinaries, **kwargs: Any) -> Iterator[SlotlessReplicationSet]:
    """A started :class:`SlotlessReplicationSet`, destroyed afterwards."""
    base = short_tmpdir()
    rset = SlotlessReplicationSet(base / "pg", binaries, **with_test_settings(kwargs))
    LEDGER.secrets.update({rset.bot_password, rset.repl_password})
    try:
        rset.start()
        yield rset
    finally:
        rset.destroy()
        shutil.rmtree(base, ignore_errors=True)
