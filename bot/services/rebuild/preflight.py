"""Preflight of a rebuild: every check runs before anything is touched, each result shown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs, urlsplit

from bot.config import ClusterConfig, NodeConfig, RebuildConfig
from bot.errors import NodeUnavailable, RemoteError
from bot.models import CheckItem, CheckLevel, NodeSnapshot, PreflightReport, basebackup_pids
from bot.phrases import Phrase
from bot.ports import JobStore, Postgres, RemoteShell, ShellConnector
from bot.services.rebuild.plan import Commands, parse_directories, rollback_slot_name
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
                    Phrase.of(
                        "preflight.lock",
                        node=node.name,
                        job=holder.id,
                        state=holder.state.value,
                        step=holder.step,
                    ),
                    Phrase.of("preflight.lock.fix"),
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
                        Phrase.of("preflight.primary.in_recovery", node=primary.name),
                        Phrase.of("preflight.primary.in_recovery.fix"),
                    )
                )
            else:
                primary_ok = True
                add(
                    _ok(
                        primary.name,
                        "primary",
                        Phrase.of(
                            "preflight.primary.ok",
                            node=primary.name,
                            version=primary_snap.server_version or "?",
                        ),
                    )
                )
        except NodeUnavailable as exc:
            add(
                _fail(
                    primary.name,
                    "primary",
                    Phrase.of("preflight.primary.down", reason=exc.reason),
                    Phrase.of("preflight.primary.down.fix"),
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
                        Phrase.of("preflight.target.primary", node=node.name),
                        Phrase.of("preflight.target.primary.fix"),
                    )
                )
            else:
                add(_ok(node.name, "target", Phrase.of("preflight.target.replica", node=node.name)))
        except NodeUnavailable as exc:
            add(
                _ok(
                    node.name,
                    "target",
                    Phrase.of("preflight.target.down", node=node.name, reason=exc.reason),
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
                    Phrase.of("preflight.ssh.failed", reason=exc.phrase),
                    Phrase.of("preflight.ssh.fix"),
                )
            )
        slot_missing = False
        size: int | None = None
        seen_name = sync_state = ""
        name_at: int | None = None
        try:
            if primary_ok and primary_snap is not None:
                slot_missing, slot_item = _slot_item(cluster, node, primary_snap, replica_snap)
                add(slot_item)
                name_at = len(items)
                add(await self._walsender_item(primary))
                size = await self._pg.total_database_size(primary)
            configured: tuple[str, str] = ("", "")
            if shell is not None:
                remote, configured = await self._remote_items(shell, cmd, cluster, node, size)
                items.extend(remote)
            if name_at is not None and primary_snap is not None:
                seen_name, sync_state, name_item = self._application_name_item(
                    node, primary_snap, configured
                )
                items.insert(name_at, name_item)
        finally:
            if shell is not None:
                await shell.close()
        return PreflightReport(
            cluster=cluster.name,
            node=node.name,
            items=tuple(items),
            slot_missing=slot_missing,
            primary_size_bytes=size,
            application_name=seen_name,
            sync_state=sync_state,
        )

    @staticmethod
    def _application_name_item(
        node: NodeConfig, primary: NodeSnapshot, configured: tuple[str, str] = ("", "")
    ) -> tuple[str, str, CheckItem]:
        """The name to keep (and the sync_state), and the item saying which name the copy gets.

        "Now" is the primary's walsender whose pid is the slot's active_pid; a base backup's
        walsender, or the name ``pg_basebackup`` an earlier rebuild left behind, does not count.
        A replica that is down has no walsender: then the name its own configuration gives its
        walreceiver (``configured``: name and where it came from) is kept.
        """
        slot = next((s for s in primary.slots if s.name == node.slot), None)
        senders = primary.walsenders
        active_pid = slot.active_pid if slot is not None and slot.active else None
        backups = basebackup_pids(senders)
        holder = next((s for s in senders if s.pid == active_pid and s.pid not in backups), None)
        seen = sync_state = ""
        if holder is not None and holder.application_name not in {"", "pg_basebackup"}:
            seen, sync_state = holder.application_name, holder.sync_state or ""
        conf_name, conf_source = configured
        from_conf = not seen and conf_name not in {"", "pg_basebackup", "walreceiver"}
        if from_conf:
            seen = conf_name
        planned = node.application_name or seen or node.name
        if holder is None:
            now = Phrase.of("preflight.name.not_streaming", node=node.name)
        elif holder.sync_state:
            now = Phrase.of(
                "preflight.name.streams_sync",
                node=node.name,
                name=holder.application_name or "?",
                sync_state=holder.sync_state,
            )
        else:
            now = Phrase.of(
                "preflight.name.streams", node=node.name, name=holder.application_name or "?"
            )
        if node.application_name:
            planned_as = Phrase.of("preflight.name.from_config", name=planned)
        elif from_conf and conf_source == "primary_conninfo":
            planned_as = Phrase.of("preflight.name.from_conninfo", name=planned)
        elif from_conf:
            planned_as = Phrase.of("preflight.name.from_cluster_name", name=planned)
        elif seen:
            planned_as = Phrase.of("preflight.name.kept", name=planned)
        else:
            planned_as = Phrase.of("preflight.name.node_name", name=planned)
        item = CheckItem(node.name, "application_name", CheckLevel.OK, now, notes=(planned_as,))
        return seen, sync_state, item

    async def _walsender_item(self, primary: NodeConfig) -> CheckItem:
        settings = await self._pg.settings(primary, ["max_wal_senders"])
        used, _ = await self._pg.usage_counts(primary)
        maximum = int(settings.get("max_wal_senders", "0"))
        free = maximum - used
        # The old replica's walsender is freed by the stop; count it as free.
        if free + 1 >= 2:
            return _ok(
                primary.name,
                "walsenders",
                Phrase.of("preflight.walsenders.ok", maximum=maximum, used=used),
            )
        return _fail(
            primary.name,
            "walsenders",
            Phrase.of("preflight.walsenders", maximum=maximum, used=used),
            Phrase.of("preflight.walsenders.fix"),
        )

    async def _remote_items(
        self,
        shell: RemoteShell,
        cmd: Commands,
        cluster: ClusterConfig,
        node: NodeConfig,
        size: int | None,
    ) -> tuple[list[CheckItem], tuple[str, str]]:
        """The remote checks, and the application_name the replica's configuration gives
        its walreceiver with its source (``("", "")`` when unknown)."""
        timeout = self._settings.command_timeout_s
        items: list[CheckItem] = []
        who = await shell.run(cmd.whoami_and_data_dir(), timeout)
        if who.exit_status != 0:
            items.append(
                _fail(
                    node.name,
                    "data_dir",
                    Phrase.of(
                        "preflight.data_dir.missing", path=str(cmd.data_dir), host=shell.label
                    ),
                    Phrase.of("preflight.data_dir.fix"),
                )
            )
            return items, ("", "")
        user, _, rest = who.stdout.strip().partition("\n")
        layout = parse_layout(rest)
        items.append(
            _ok(
                node.name,
                "ssh",
                Phrase.of(
                    "preflight.ssh.ok", host=shell.label, user=user.strip(), path=str(cmd.data_dir)
                ),
            )
        )
        items.extend(_layout_items(node, cmd, layout))
        ident, disk, conf, dirs = await asyncio.gather(
            shell.run(cmd.identify_system(), timeout),
            shell.run(cmd.free_bytes(), timeout),
            shell.run(cmd.standby_settings(), timeout),
            shell.run(cmd.directories(), timeout),
        )
        items.append(self._names_item(node, cmd, dirs.stdout))
        if ident.exit_status == 0:
            primary_id = ident.stdout.strip().partition("|")[0]
            items.append(_identity_item(cluster, node, cmd, layout, primary_id))
            items.append(
                _ok(
                    node.name,
                    "replication login",
                    Phrase.of(
                        "preflight.login.ok",
                        host=shell.label,
                        primary_host=cmd.replication.host,
                        port=cmd.replication.port,
                        user=cmd.replication.user,
                    ),
                )
            )
        else:
            items.append(
                _fail(
                    node.name,
                    "replication login",
                    Phrase.of(
                        "preflight.login.failed", output=tail(ident.stderr or ident.stdout, 3)
                    ),
                    Phrase.of("preflight.login.fix"),
                )
            )
        items.append(self._disk_item(node, disk.stdout, size))
        items.extend(await self._settings_items(cluster, node, conf.stdout))
        running = await self._data_directory_item(node, cmd)
        if running is not None:
            items.append(running)
        return items, configured_receiver_name(conf.stdout)

    @staticmethod
    def _names_item(node: NodeConfig, cmd: Commands, output: str) -> CheckItem:
        """The plan's old and failed directory names must be free: the job renames into them,
        and its rollback may only ever move what the job itself created."""
        present = parse_directories(output)
        taken = [
            str(p)
            for label, p in (("old", cmd.old_dir), ("failed", cmd.failed_dir))
            if label in present
        ]
        if taken:
            return _fail(
                node.name,
                "directory names",
                Phrase.of("preflight.names.taken", paths=", ".join(taken)),
                Phrase.of("preflight.names.taken.fix"),
            )
        return _ok(
            node.name, "directory names", Phrase.of("preflight.names.free", name=cmd.old_dir.name)
        )

    async def _data_directory_item(self, node: NodeConfig, cmd: Commands) -> CheckItem | None:
        """When the replica answers: it must run from the configured data_dir."""
        try:
            shown = (await self._pg.settings(node, ["data_directory"])).get("data_directory")
        except NodeUnavailable:
            return None
        if shown is None:
            return CheckItem(
                node.name,
                "data_directory",
                CheckLevel.WARN,
                Phrase.of("preflight.data_directory.hidden"),
                Phrase.of("preflight.data_directory.hidden.fix"),
            )
        if PurePosixPath(shown) != cmd.data_dir:
            return _fail(
                node.name,
                "data_directory",
                Phrase.of(
                    "preflight.data_directory.other",
                    node=node.name,
                    shown=shown,
                    path=str(cmd.data_dir),
                ),
                Phrase.of("preflight.data_directory.other.fix"),
            )
        return _ok(
            node.name,
            "data_directory",
            Phrase.of("preflight.data_directory.ok", node=node.name, path=str(cmd.data_dir)),
        )

    def _disk_item(self, node: NodeConfig, df_line: str, size: int | None) -> CheckItem:
        fields = df_line.split()
        if len(fields) < 4 or not fields[3].isdigit():
            return CheckItem(
                node.name, "disk", CheckLevel.WARN, Phrase.of("preflight.disk.unknown")
            )
        free = int(fields[3])
        if size is None:
            return CheckItem(
                node.name,
                "disk",
                CheckLevel.WARN,
                Phrase.of("preflight.disk.size_unknown", free_bytes=free),
            )
        need = int(size * self._settings.disk_headroom)
        detail = Phrase.of("preflight.disk", free_bytes=free, need_bytes=need)
        if free >= need:
            return _ok(node.name, "disk", detail)
        return _fail(node.name, "disk", detail, Phrase.of("preflight.disk.fix"))

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
                    Phrase.of("preflight.settings.unknown", reason=exc.reason),
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
                        Phrase.of("preflight.setting.unreadable", setting=name),
                    )
                )
            elif int(mine) < int(theirs):
                items.append(
                    _fail(
                        node.name,
                        name,
                        Phrase.of("preflight.lower", setting=name, value=mine, primary=theirs),
                        Phrase.of(
                            "preflight.lower.fix", setting=name, primary=theirs, node=node.name
                        ),
                    )
                )
            else:
                items.append(
                    _ok(
                        node.name,
                        name,
                        Phrase.of("preflight.vs_primary", setting=name, value=mine, primary=theirs),
                    )
                )
        return items


def conninfo_application_name(conninfo: str) -> str:
    """The ``application_name`` of a libpq connection string ("" if it names none).

    Keyword form (``key=value``, ``key = 'quoted \\' value'``) or a URI's query parameter.
    Only this one value is returned: the string may hold a password, which must go nowhere.
    """
    text = conninfo.strip()
    if text.startswith(("postgresql://", "postgres://")):
        query = urlsplit(text).query
        values = parse_qs(query, keep_blank_values=True).get("application_name")
        return values[-1] if values else ""
    found = ""
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=" or not key:
            return found  # malformed: keep what was found before
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while i < n and text[i] != "'":
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            i += 1  # the closing quote
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
        if key == "application_name":
            found = "".join(value)
    return found


def configured_receiver_name(output: str) -> tuple[str, str]:
    """The application_name the walreceiver of a replica uses, from the
    ``primary_conninfo=`` and ``cluster_name=`` lines of :meth:`Commands.standby_settings`,
    and the setting it came from (``primary_conninfo`` or ``cluster_name``); ``("", "")``
    when neither names one."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in {"primary_conninfo", "cluster_name"}:
            values[name] = value.strip()
    name = conninfo_application_name(values.get("primary_conninfo", ""))
    if name:
        return name, "primary_conninfo"
    cluster_name = values.get("cluster_name", "")
    if cluster_name:
        return cluster_name, "cluster_name"
    return "", ""


@dataclass(frozen=True)
class DataDirLayout:
    """What the layout probe of :meth:`Commands.whoami_and_data_dir` found."""

    symlink_to: str = ""  # the data directory is a symlink to this
    wal_symlink_to: str = ""  # its pg_wal is a symlink to this
    mount_point: bool = False
    tablespaces: int = 0  # entries in pg_tblspc
    system_identifier: str = ""  # from pg_controldata ("" when unreadable)


def parse_layout(text: str) -> DataDirLayout:
    """The ``key=value`` lines of the layout probe (unknown or malformed lines are ignored)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    count = values.get("tablespaces", "0")
    sysid = values.get("system_identifier", "")
    return DataDirLayout(
        symlink_to=values.get("symlink", ""),
        wal_symlink_to=values.get("wal_symlink", ""),
        mount_point=values.get("mount") == "yes",
        tablespaces=int(count) if count.isdigit() else 0,
        system_identifier=sysid if sysid.isdigit() else "",
    )


def _layout_items(node: NodeConfig, cmd: Commands, layout: DataDirLayout) -> list[CheckItem]:
    """Refuse the layouts a rebuild does not handle; it never replaces a link or a mount."""
    data = cmd.data_dir
    items: list[CheckItem] = []
    if layout.symlink_to:
        items.append(
            _fail(
                node.name,
                "data_dir",
                Phrase.of("preflight.layout.symlink", path=str(data), target=layout.symlink_to),
                Phrase.of("preflight.layout.symlink.fix", target=layout.symlink_to),
            )
        )
    if layout.mount_point:
        items.append(
            _fail(
                node.name,
                "data_dir",
                Phrase.of("preflight.layout.mount", path=str(data)),
                Phrase.of("preflight.layout.mount.fix"),
            )
        )
    if layout.wal_symlink_to:
        items.append(
            _fail(
                node.name,
                "pg_wal",
                Phrase.of(
                    "preflight.layout.wal_symlink",
                    path=str(data / "pg_wal"),
                    target=layout.wal_symlink_to,
                ),
                Phrase.of("preflight.layout.wal_symlink.fix"),
            )
        )
    if layout.tablespaces:
        where = str(data / "pg_tblspc")
        items.append(
            _fail(
                node.name,
                "tablespaces",
                Phrase.of("preflight.layout.tablespace", path=where)
                if layout.tablespaces == 1
                else Phrase.of(
                    "preflight.layout.tablespaces", path=where, entries=layout.tablespaces
                ),
                Phrase.of("preflight.layout.tablespaces.fix"),
            )
        )
    if not items:
        items.append(_ok(node.name, "layout", Phrase.of("preflight.layout.ok", path=str(data))))
    return items


def _identity_item(
    cluster: ClusterConfig,
    node: NodeConfig,
    cmd: Commands,
    layout: DataDirLayout,
    primary_id: str,
) -> CheckItem:
    """data_dir must hold a copy of the primary's cluster (same system identifier)."""
    mine = layout.system_identifier
    if not mine:
        return _fail(
            node.name,
            "identity",
            Phrase.of("preflight.identity.unreadable", path=str(cmd.data_dir), node=node.name),
            Phrase.of("preflight.data_dir.fix"),
        )
    if mine != primary_id:
        return _fail(
            node.name,
            "identity",
            Phrase.of(
                "preflight.identity.other",
                path=str(cmd.data_dir),
                mine=mine,
                primary_id=primary_id,
            ),
            Phrase.of("preflight.identity.other.fix", node=node.name),
        )
    return _ok(
        node.name,
        "identity",
        Phrase.of(
            "preflight.identity.ok",
            path=str(cmd.data_dir),
            primary=cluster.primary.name,
            mine=mine,
        ),
    )


def _slot_item(
    cluster: ClusterConfig,
    node: NodeConfig,
    primary: NodeSnapshot,
    replica: NodeSnapshot | None,
) -> tuple[bool, CheckItem]:
    """The slot check, from the probes of the primary and (if it answered) the replica.

    Refused: a ``SLOT_rb`` left by an earlier job (a rollback would take it for this job's copy
    of the old replica's position), and a slot held by a running pg_basebackup.
    """
    assert node.slot is not None
    primary_name = cluster.primary.name
    copy_name = rollback_slot_name(node.slot)
    if any(s.name == copy_name for s in primary.slots):
        return False, _fail(
            node.name,
            "slot",
            Phrase.of("preflight.slot.leftover", copy=copy_name, primary=primary_name),
            Phrase.of("preflight.slot.leftover.fix", copy=copy_name, node=node.name),
        )
    slot = next((s for s in primary.slots if s.name == node.slot), None)
    if slot is None:
        return True, CheckItem(
            node.name,
            "slot",
            CheckLevel.WARN,
            Phrase.of("preflight.slot.missing", slot=node.slot, primary=primary_name),
            Phrase.of("preflight.slot.missing.fix"),
        )
    if slot.slot_type != "physical":
        return False, _fail(
            node.name,
            "slot",
            Phrase.of("preflight.slot.type", slot=node.slot, type=slot.slot_type),
            Phrase.of("preflight.slot.type.fix"),
        )
    if not slot.active:
        return False, _ok(node.name, "slot", Phrase.of("preflight.slot.inactive", slot=node.slot))
    holder = next((s for s in primary.walsenders if s.pid == slot.active_pid), None)
    holder_name = holder.application_name if holder else "?"
    if holder is not None and holder.pid in basebackup_pids(primary.walsenders):
        return False, _fail(
            node.name,
            "slot",
            Phrase.of("preflight.slot.basebackup", slot=node.slot, pid=holder.pid),
            Phrase.of("preflight.slot.basebackup.fix"),
        )
    receiver = replica.receiver if replica is not None else None
    own = (
        receiver is not None and receiver.slot_name == node.slot and receiver.status == "streaming"
    )
    if holder_name in {node.name, node.application_name} or own:
        return False, _ok(
            node.name,
            "slot",
            Phrase.of("preflight.slot.own", slot=node.slot, node=node.name),
        )
    return False, _fail(
        node.name,
        "slot",
        Phrase.of(
            "preflight.slot.other",
            slot=node.slot,
            pid=str(slot.active_pid),
            holder=holder_name,
            node=node.name,
        ),
        Phrase.of("preflight.slot.other.fix"),
    )


def _ok(node: str, name: str, detail: Phrase) -> CheckItem:
    return CheckItem(node, name, CheckLevel.OK, detail)


def _fail(node: str, name: str, detail: Phrase, fix: Phrase) -> CheckItem:
    return CheckItem(node, name, CheckLevel.FAIL, detail, fix)
