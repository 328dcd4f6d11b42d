"""The executor of plans on a real replica: its host's shell, and SQL on it or its primary.

Probes:

* ``server_stopped`` / ``server_running``: ``pg_ctl status -D data_dir`` exits 3 / 0;
* ``slot_inactive`` (slot): no walsender holds the slot on the primary;
* ``streaming`` (slot, application_name[, sync_state]): :func:`judge_streaming` — the replica
  is in recovery with its receiver streaming *and* the primary's walsender on the slot streams
  under that name.

A file edit keeps the original first (``cp -p``, only when no copy exists yet) and replaces
the file atomically (a temporary file in the same directory, then ``mv``); the new content
travels base64-encoded so that no quoting of it is needed.
"""

from __future__ import annotations

import base64
import contextlib
import shlex
from pathlib import PurePosixPath

from bot.config import ClusterConfig, NodeConfig
from bot.errors import NodeUnavailable, ReplbotError, SlotAlreadyExists, SlotNotFound
from bot.models import CommandResult, NodeSnapshot
from bot.phrases import Phrase
from bot.ports import Postgres, RemoteShell
from bot.services.plans.model import (
    FileEdit,
    Probe,
    RemoteCommand,
    SlotChange,
    SlotOp,
    Sql,
    SqlTarget,
    Wait,
)
from bot.services.plans.runner import OutputSink, StepFailed
from bot.services.rebuild.verify import judge_streaming

SERVER_RUNNING_EXIT = 0
SERVER_STOPPED_EXIT = 3


def server_status_command(node: NodeConfig) -> str:
    """``pg_ctl status`` of the replica's data directory (exit 0 running, 3 stopped)."""
    assert node.pg_bin_dir is not None and node.data_dir is not None
    pg_ctl = PurePosixPath(node.pg_bin_dir) / "pg_ctl"
    return f"{shlex.quote(str(pg_ctl))} status -D {shlex.quote(str(node.data_dir))}"


def file_edit_command(edit: FileEdit) -> str:
    """The shell line that carries out ``edit`` (keep the original, replace atomically)."""
    path, backup = shlex.quote(edit.path), shlex.quote(edit.backup_path)
    temp = shlex.quote(f"{edit.path}.replbot-new")
    payload = base64.b64encode(edit.content.encode()).decode()
    return (
        f"if [ -e {path} ] && [ ! -e {backup} ]; then cp -p -- {path} {backup} || exit 1; fi; "
        f"printf %s {payload} | base64 -d > {temp} && "
        f"{{ if [ -e {path} ]; then chmod --reference={path} {temp}; fi; }} && mv -- {temp} {path}"
    )


class HostExecutor:
    """Carries out plan actions for one replica of one cluster."""

    def __init__(
        self,
        pg: Postgres,
        shell: RemoteShell,
        cluster: ClusterConfig,
        node: NodeConfig,
        command_timeout_s: float,
    ) -> None:
        self._pg = pg
        self._shell = shell
        self._cluster = cluster
        self._node = node
        self._timeout = command_timeout_s
        # what the last streaming probe saw (for the failure message)
        self.last_seen: tuple[Phrase, ...] = ()

    async def remote(self, action: RemoteCommand, on_output: OutputSink) -> CommandResult:
        """Run the command on the replica's host."""
        if action.stream:  # no timeout unless the step sets one: a copy takes what it takes
            return await self._shell.stream(action.command, on_output, action.timeout_s)
        return await self._shell.run(action.command, action.timeout_s or self._timeout)

    async def sql(self, action: Sql) -> None:
        """Execute on the primary or on the replica."""
        node = self._cluster.primary if action.target is SqlTarget.PRIMARY else self._node
        await self._pg.execute(node, action.statement, action.params)

    async def slot(self, action: SlotChange) -> None:
        """Create (kept if it exists), drop (done if missing) or copy a slot on the primary."""
        primary = self._cluster.primary
        if action.op is SlotOp.CREATE:
            with contextlib.suppress(SlotAlreadyExists):
                await self._pg.create_physical_slot(primary, action.slot)
        elif action.op is SlotOp.DROP:
            with contextlib.suppress(SlotNotFound):
                await self._pg.drop_slot(primary, action.slot)
        else:
            slots = {s.name: s for s in (await self._pg.snapshot(primary)).slots}
            source = slots.get(action.source)
            if source is None or source.restart_lsn is None:
                return  # the source reserves no WAL: there is nothing to keep
            stale = slots.get(action.slot)
            if stale is not None and not stale.active:
                await self._pg.drop_slot(primary, action.slot)
            await self._pg.copy_physical_slot(primary, action.source, action.slot)

    async def edit(self, action: FileEdit) -> None:
        """Replace a file on the replica's host, original kept."""
        result = await self._shell.run(file_edit_command(action), self._timeout)
        if result.exit_status != 0:
            raise StepFailed(
                "edit", Phrase.of("error.file.no_write", path=action.path), result.stderr.strip()
            )

    async def probe(self, action: Wait) -> bool:
        """Check the condition once."""
        if action.probe in (Probe.SERVER_STOPPED, Probe.SERVER_RUNNING):
            result = await self._shell.run(server_status_command(self._node), self._timeout)
            wanted = SERVER_STOPPED_EXIT if action.probe is Probe.SERVER_STOPPED else 0
            return result.exit_status == wanted
        try:
            primary = await self._pg.snapshot(self._cluster.primary)
        except ReplbotError:
            return False
        slot_name = action.args[0] if action.args else ""
        slot = next((s for s in primary.slots if s.name == slot_name), None)
        if action.probe is Probe.SLOT_INACTIVE:
            return slot is None or not slot.active
        replica: NodeSnapshot | None
        try:
            replica = await self._pg.snapshot(self._node)
        except NodeUnavailable:
            replica = None
        name = action.args[1] if len(action.args) > 1 else ""
        sync_state = action.args[2] if len(action.args) > 2 else ""
        verdict = judge_streaming(replica, slot, primary.walsenders, name, sync_state)
        self.last_seen = verdict.seen
        return verdict.ok
