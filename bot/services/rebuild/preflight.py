"""Preflight of a rebuild: every check runs before anything is touched, each result shown."""

from __future__ import annotations

import asyncio

from bot.config import ClusterConfig, NodeConfig, RebuildConfig
from bot.errors import NodeUnavailable, RemoteError
from bot.models import CheckItem, CheckLevel, NodeSnapshot, PreflightReport
from bot.ports import JobStore, Postgres, RemoteShell, ShellConnector
from bot.services.rebuild.plan import Commands
from bot.services.replication import STANDBY_MINIMUMS

OUTPUT_TAIL_LINES = 8


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last non-empty lines of command output."""
    kept = [line.rstrip("\r") for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    return "\n".join(kept[-lines:])


class Preflight:
    """Runs the read-only checks for one replica and collects them in a report."""

    def __init__(
        self,
        postgres: Postgres,
        shells: ShellConnector,
        jobs: JobStore,
        settings: RebuildConfig,
    ) -> None:
        self._pg = postgres
        self._shells = shells
        self._jobs = jobs
        self._settings = settings

    async def run(self, cluster: ClusterConfig, node: NodeConfig, tag: str) -> PreflightReport:
        """All checks; a failed check is a FAIL item, never an exception."""
        cmd = Commands(node, tag)
        items: list[CheckItem] = []
        add = items.append

        holder = await self._jobs.holding_lock(cluster.name, node.name)
        if holder is not None:
            add(
                _fail(
                    node.name,
                    "lock",
                    f"rebuild of {node.name} already in progress "
                    f"(job {holder.id}, {holder.state.value}, step {holder.step})",
                    "wait for it, or /rebuild NODE --rollback / --abandon if it was interrupted",
                )
            )

        primary = cluster.primary
        primary_ok = False
        primary_snap: NodeSnapshot | None = None
        try:
            primary_snap = await self._pg.snapshot(primary)
            if primary_snap.in_recovery:
                add(
                    _fail(
                        primary.name,
                        "primary",
                        f"{primary.name} is in recovery: not a primary",
                        "fix the topology in the config before rebuilding",
                    )
                )
            else:
                primary_ok = True
                add(
                    _ok(
                        primary.name,
                        "primary",
                        f"{primary.name} is primary "
                        f"(PostgreSQL {primary_snap.server_version or '?'})",
                    )
                )
        except NodeUnavailable as exc:
            add(
                _fail(
                    primary.name,
                    "primary",
                    f"primary unreachable: {exc.reason}",
                    "a rebuild copies from the primary: bring it back first",
                )
            )

        replica_snap: NodeSnapshot | None = None
        try:
            replica_snap = await self._pg.snapshot(node)
            if not replica_snap.in_recovery:
                add(
                    _fail(
                        node.name,
                        "target",
                        f"{node.name} answers and is NOT in recovery: "
                        "it is a primary; refusing to wipe it",
                        "check which node is the primary",
                    )
                )
            else:
                add(_ok(node.name, "target", f"{node.name} is a replica (in recovery)"))
        except NodeUnavailable as exc:
            add(
                _ok(
                    node.name,
                    "target",
                    f"{node.name} does not answer ({exc.reason}); that is why it is being rebuilt",
                )
            )

        shell: RemoteShell | None = None
        try:
            shell = await self._shells.connect(node)
        except RemoteError as exc:
            add(
                _fail(
                    node.name,
                    "ssh",
                    exc.user_message,
                    "check ssh.host/port/user/key_file/known_hosts",
                )
            )
        slot_missing = False
        size: int | None = None
        try:
            if primary_ok and primary_snap is not None:
                slot_missing, slot_item = _slot_item(cluster, node, primary_snap, replica_snap)
                add(slot_item)
                add(await self._walsender_item(primary))
                size = await self._pg.total_database_size(primary)
            if shell is not None:
                items.extend(await self._remote_items(shell, cmd, cluster, node, size))
        finally:
            if shell is not None:
                await shell.close()
        return PreflightReport(
            cluster=cluster.name,
            node=node.name,
            items=tuple(items),
            slot_missing=slot_missing,
            primary_size_bytes=size,
        )

    async def _walsender_item(self, primary: NodeConfig) -> CheckItem:
        settings = await self._pg.settings(primary, ["max_wal_senders"])
        used, _ = await self._pg.usage_counts(primary)
        maximum = int(settings.get("max_wal_senders", "0"))
        free = maximum - used
        # The old replica's walsender is freed by the stop; count it as free.
        detail = f"max_wal_senders = {maximum}, {used} in use"
        if free + 1 >= 2:
            return _ok(primary.name, "walsenders", detail + " (pg_basebackup needs 2)")
        return _fail(
            primary.name,
            "walsenders",
            detail,
            "raise max_wal_senders on the primary: --wal-method=stream needs two",
        )

    async def _remote_items(
        self,
        shell: RemoteShell,
        cmd: Commands,
        cluster: ClusterConfig,
        node: NodeConfig,
        size: int | None,
    ) -> list[CheckItem]:
        timeout = self._settings.command_timeout_s
        items: list[CheckItem] = []
        who = await shell.run(cmd.whoami_and_data_dir(), timeout)
        if who.exit_status != 0:
            items.append(
                _fail(
                    node.name,
                    "data_dir",
                    f"{cmd.data_dir} does not exist on {shell.label}",
                    "check data_dir in the config",
                )
            )
            return items
        items.append(
            _ok(node.name, "ssh", f"{shell.label} as {who.stdout.strip()}; {cmd.data_dir} exists")
        )
        ident, disk, conf = await asyncio.gather(
            shell.run(cmd.identify_system(), timeout),
            shell.run(cmd.free_bytes(), timeout),
            shell.run(cmd.standby_settings(), timeout),
        )
        if ident.exit_status == 0:
            items.append(
                _ok(
                    node.name,
                    "replication login",
                    f"{shell.label} reaches {cmd.replication.host}:"
                    f"{cmd.replication.port} as {cmd.replication.user} (IDENTIFY_SYSTEM)",
                )
            )
        else:
            items.append(
                _fail(
                    node.name,
                    "replication login",
                    "the replica host cannot open a replication connection: "
                    + tail(ident.stderr or ident.stdout, 3),
                    "check the primary's pg_hba.conf 'replication' line and the "
                    "replica host's ~/.pgpass",
                )
            )
        items.append(self._disk_item(node, disk.stdout, size))
        items.extend(await self._settings_items(cluster, node, conf.stdout))
        return items

    def _disk_item(self, node: NodeConfig, df_line: str, size: int | None) -> CheckItem:
        fields = df_line.split()
        if len(fields) < 4 or not fields[3].isdigit():
            return CheckItem(node.name, "disk", CheckLevel.WARN, "free space unknown")
        free = int(fields[3])
        if size is None:
            return CheckItem(
                node.name, "disk", CheckLevel.WARN, f"{free} bytes free; primary size unknown"
            )
        need = int(size * self._settings.disk_headroom)
        detail = f"{_gb(free)} free, a copy needs about {_gb(need)} (old directory is kept)"
        if free >= need:
            return _ok(node.name, "disk", detail)
        return _fail(node.name, "disk", detail, "free space on the replica's filesystem")

    async def _settings_items(
        self, cluster: ClusterConfig, node: NodeConfig, output: str
    ) -> list[CheckItem]:
        replica: dict[str, str] = {}
        for line in output.splitlines():
            name, _, value = line.strip().partition("=")
            if name in STANDBY_MINIMUMS and value.strip().isdigit():
                replica[name] = value.strip()
        try:
            primary = await self._pg.settings(cluster.primary, STANDBY_MINIMUMS)
            travelling = await self._pg.auto_conf_settings(cluster.primary, STANDBY_MINIMUMS)
        except NodeUnavailable as exc:
            return [
                CheckItem(
                    node.name,
                    "settings",
                    CheckLevel.WARN,
                    f"primary settings unknown: {exc.reason}",
                )
            ]
        items: list[CheckItem] = []
        for name in STANDBY_MINIMUMS:
            theirs = primary.get(name)
            mine = travelling.get(name) or replica.get(name)
            if mine is None or theirs is None:
                items.append(
                    CheckItem(
                        node.name,
                        name,
                        CheckLevel.WARN,
                        f"{name}: could not read the replica's value",
                    )
                )
            elif int(mine) < int(theirs):
                items.append(
                    _fail(
                        node.name,
                        name,
                        f"{name} = {mine} is lower than on the primary, where it is {theirs}",
                        f"set {name} = {theirs} (or more) in {node.name}'s "
                        "configuration: it would not start",
                    )
                )
            else:
                items.append(_ok(node.name, name, f"{name} = {mine} (primary {theirs})"))
        return items


def _slot_item(
    cluster: ClusterConfig,
    node: NodeConfig,
    primary: NodeSnapshot,
    replica: NodeSnapshot | None,
) -> tuple[bool, CheckItem]:
    """The slot check, from the probes of the primary and (if it answered) the replica."""
    assert node.slot is not None
    primary_name = cluster.primary.name
    slot = next((s for s in primary.slots if s.name == node.slot), None)
    if slot is None:
        return True, CheckItem(
            node.name,
            "slot",
            CheckLevel.WARN,
            f"slot {node.slot} does not exist on {primary_name}",
            "it will be created as the first step",
        )
    if slot.slot_type != "physical":
        return False, _fail(
            node.name, "slot", f"slot {node.slot} is {slot.slot_type}", "use a physical slot"
        )
    if not slot.active:
        return False, _ok(node.name, "slot", f"slot {node.slot} exists and is inactive")
    holder = next((s for s in primary.walsenders if s.pid == slot.active_pid), None)
    holder_name = holder.application_name if holder else "?"
    receiver = replica.receiver if replica is not None else None
    own = (
        receiver is not None and receiver.slot_name == node.slot and receiver.status == "streaming"
    )
    if holder_name == node.name or own:
        return False, _ok(
            node.name,
            "slot",
            f"slot {node.slot} is held by {node.name} itself; released when it stops",
        )
    return False, _fail(
        node.name,
        "slot",
        f"slot {node.slot} is active for PID {slot.active_pid} "
        f"(application_name {holder_name}), not {node.name}",
        "find the process using the slot and stop it",
    )


def _ok(node: str, name: str, detail: str) -> CheckItem:
    return CheckItem(node, name, CheckLevel.OK, detail)


def _fail(node: str, name: str, detail: str, fix: str) -> CheckItem:
    return CheckItem(node, name, CheckLevel.FAIL, detail, fix)


def _gb(value: int) -> str:
    return f"{value / 1024**3:.2f} GB" if value >= 1024**3 else f"{value / 1024**2:.1f} MB"
