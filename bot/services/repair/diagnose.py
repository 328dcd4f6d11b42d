"""The read-only diagnosis of a replica: one snapshot of each side and one SSH command.

The SSH command reads what the server *will* read — ``pg_ctl status``, ``standby.signal``,
``postgres -C`` for the hot-standby minimums, ``primary_conninfo`` and ``primary_slot_name``,
``pg_controldata``, ``postgresql.auto.conf`` and the server log's tail — in one round trip.
``primary_conninfo`` is reduced to host, port, user and application_name at once: a password
in it never leaves this module, and an ``auto.conf`` holding one is not kept at all.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import parse_qs, urlsplit

from bot.config import ClusterConfig, NodeConfig
from bot.errors import NodeUnavailable, RemoteError, ReplbotError
from bot.models import NodeSnapshot, SlotInfo
from bot.phrases import Phrase
from bot.ports import Postgres, ShellConnector
from bot.services.rebuild.plan import q
from bot.services.rebuild.verify import judge_streaming
from bot.services.repair.controldata import ControlData, parse_controldata
from bot.services.repair.models import (
    ConninfoView,
    Diagnosis,
    SettingCheck,
    StartRefusal,
)
from bot.services.repair.timeline import classify_by_timeline
from bot.services.replication import STANDBY_MINIMUMS

SECTION = "@@replbot@@ "
CONF_NAMES = (*STANDBY_MINIMUMS, "primary_conninfo", "primary_slot_name", "cluster_name")
LOG_LINES = 40
START_RE = re.compile(r"starting PostgreSQL \d+")
REFUSAL_RE = re.compile(
    r"(\w+) = (\d+) is a lower setting than on the primary server, where its value was (\d+)"
)
_SEGMENT_RE = "^[0-9A-F]{24}$"
WAL_SQL = (
    "SELECT substr(pg_catalog.pg_walfile_name(%s::pg_lsn), 9), "
    "(SELECT min(substr(name, 9)) FROM pg_catalog.pg_ls_waldir() WHERE name ~ %s)"
)


def auto_conf_path(node: NodeConfig) -> PurePosixPath:
    """postgresql.auto.conf lives in the data directory (wherever postgresql.conf is)."""
    assert node.data_dir is not None
    return PurePosixPath(node.data_dir) / "postgresql.auto.conf"


def probe_command(node: NodeConfig) -> str:
    """The one shell line of a diagnosis (sections marked by :data:`SECTION` lines)."""
    assert node.data_dir is not None and node.pg_bin_dir is not None
    data = PurePosixPath(node.data_dir)
    conf = PurePosixPath(node.effective_conf_dir or data)
    binary = PurePosixPath(node.pg_bin_dir)
    postgres = q(binary / "postgres")
    if node.log_file is not None:
        log_tail = f"tail -n {LOG_LINES} {q(node.log_file)} 2>/dev/null"
    else:
        log_tail = (
            f"for f in $(ls -t {q(data)}/log/* {q(data)}/pg_log/* 2>/dev/null | head -n 1); "
            f'do tail -n {LOG_LINES} "$f"; done'
        )
    parts = [
        f'echo "status=$({q(binary / "pg_ctl")} status -D {q(data)} >/dev/null 2>&1; echo $?)"',
        f'echo "standby_signal=$(if [ -e {q(data / "standby.signal")} ]; then echo yes; fi)"',
        *(
            f'echo "setting.{name}=$({postgres} -D {q(conf)} -C {name} 2>/dev/null)"'
            for name in CONF_NAMES
        ),
        f'echo "{SECTION}controldata"',
        f"LC_ALL=C {q(binary / 'pg_controldata')} {q(data)} 2>&1",
        f'echo "{SECTION}auto_conf"',
        f"cat -- {q(auto_conf_path(node))} 2>/dev/null",
        f'echo "{SECTION}log"',
        log_tail,
        "true",
    ]
    return "; ".join(parts)


def split_sections(output: str) -> dict[str, str]:
    """Probe output -> {"head": ..., "controldata": ..., "auto_conf": ..., "log": ...}."""
    sections: dict[str, list[str]] = {"head": []}
    current = "head"
    for line in output.split("\n"):
        if line.startswith(SECTION):
            current = line[len(SECTION) :].strip()
            sections[current] = []
        else:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def parse_head(text: str) -> dict[str, str]:
    """``key=value`` lines of the probe's first section."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def parse_refusals(log_tail: str) -> tuple[StartRefusal, ...]:
    """ "insufficient parameter settings" details of the newest start attempt in the log tail
    (the newest per setting); a refusal before a later start is history, not the reason."""
    starts = [m.start() for m in START_RE.finditer(log_tail)]
    newest = log_tail[starts[-1] :] if starts else log_tail
    found: dict[str, StartRefusal] = {}
    for match in REFUSAL_RE.finditer(newest):
        name, value, primary = match.group(1), int(match.group(2)), int(match.group(3))
        found[name] = StartRefusal(name, value, primary)
    return tuple(found.values())


def conninfo_fields(conninfo: str) -> dict[str, str]:
    """Keyword/value pairs of a libpq connection string (keyword form or URI)."""
    text = conninfo.strip()
    if text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        fields = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.hostname:
            fields["host"] = parts.hostname
        if parts.port:
            fields["port"] = str(parts.port)
        if parts.username:
            fields["user"] = parts.username
        if parts.password:
            fields["password"] = parts.password
        return fields
    fields = {}
    for match in re.finditer(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", text):
        value = match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[match.group(1)] = value
    return fields


def conninfo_view(conninfo: str) -> ConninfoView:
    """What a ``primary_conninfo`` names, without its password."""
    if not conninfo.strip():
        return ConninfoView(present=False)
    fields = conninfo_fields(conninfo)
    return ConninfoView(
        present=True,
        host=fields.get("host", fields.get("hostaddr", "")),
        port=fields.get("port", "5432"),
        user=fields.get("user", ""),
        application_name=fields.get("application_name", ""),
        has_password=any(key.startswith("pass") for key in fields),  # libpq keyword
    )


def _conninfo_ok(conninfo: ConninfoView, node: NodeConfig) -> bool:
    """As :attr:`Diagnosis.conninfo_ok`: primary_conninfo names the replication source."""
    assert node.replication is not None
    return (
        conninfo.present
        and conninfo.host == node.replication.host
        and conninfo.port == str(node.replication.port)
    )


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


class Diagnoser:
    """Reads one replica and its primary; changes nothing."""

    def __init__(self, postgres: Postgres, shells: ShellConnector, timeout_s: float) -> None:
        self._pg = postgres
        self._shells = shells
        self._timeout = timeout_s

    async def diagnose(self, cluster: ClusterConfig, node: NodeConfig) -> Diagnosis:
        """The diagnosis of ``node`` (raises RemoteError when its host cannot be reached)."""
        assert node.slot is not None and node.replication is not None
        primary_node = cluster.primary
        primary: NodeSnapshot | None
        try:
            primary = await self._pg.snapshot(primary_node)
        except NodeUnavailable:
            primary = None
        replica: NodeSnapshot | None
        replica_error: str | None = None
        try:
            replica = await self._pg.snapshot(node)
        except NodeUnavailable as exc:
            replica, replica_error = None, exc.reason
        shell = await self._shells.connect(node)
        try:
            result = await shell.run(probe_command(node), self._timeout)
        finally:
            await shell.close()
        if result.exit_status != 0:
            raise RemoteError(
                Phrase.of("error.repair.diagnosis", host=shell.label, output=result.stderr.strip())
            )
        sections = split_sections(result.stdout)
        head = parse_head(sections.get("head", ""))
        status = head.get("status", "")
        server_running = {"0": True, "3": False}.get(status)
        control: ControlData | None = None
        if replica is None:
            control = parse_controldata(sections.get("controldata", ""))
        conninfo = conninfo_view(head.get("setting.primary_conninfo", ""))
        auto_conf: str | None = sections.get("auto_conf", "")
        if auto_conf is not None and re.search(r"password\s*=", auto_conf):
            auto_conf = None  # a replication password is in it: never carried further
        slot = next((s for s in primary.slots if s.name == node.slot), None) if primary else None
        application_name = (
            node.application_name
            or conninfo.application_name
            or head.get("setting.cluster_name", "")
            or node.name
        )
        verdict = judge_streaming(
            replica, slot, primary.walsenders if primary else (), application_name
        )
        timeline = replica.timeline if replica is not None else (control and control.timeline)
        receive = replica.receiver.flushed_lsn if replica and replica.receiver else None
        replay = replica.lsn if replica is not None else None
        needed = replay if replica is not None else (control.redo_lsn if control else None)
        wal_available, wal_note = await self._wal_available(primary_node, slot, needed, primary)
        primary_settings: dict[str, str] = {}
        if primary is not None:
            try:
                primary_settings = await self._pg.settings(primary_node, STANDBY_MINIMUMS)
            except NodeUnavailable:
                primary_settings = {}
        settings = tuple(
            SettingCheck(name, _int(head.get(f"setting.{name}")), _int(primary_settings.get(name)))
            for name in STANDBY_MINIMUMS
        )
        refusals = parse_refusals(sections.get("log", "")) if not server_running else ()
        alter_missing: tuple[str, ...] | None = None
        if replica is not None:
            low = [s.name for s in settings if s.too_low]
            standby = [
                name
                for name, wrong in (
                    ("primary_conninfo", not _conninfo_ok(conninfo, node)),
                    ("primary_slot_name", head.get("setting.primary_slot_name", "") != node.slot),
                )
                if wrong
            ]
            alter_missing = await self._alter_system_missing(node, low, standby)
        primary_timeline = primary.timeline if primary else None
        primary_sysid = await self._system_identifier(primary_node) if primary else None
        if replica is not None:
            replica_sysid = await self._system_identifier(node)
        else:
            replica_sysid = (control.system_identifier or None) if control else None
        return Diagnosis(
            cluster=cluster.name,
            node=node.name,
            primary_node=primary_node.name,
            primary_up=primary is not None and primary.in_recovery is False,
            primary_timeline=primary_timeline,
            primary_lsn=primary.lsn if primary else None,
            replica_up=replica is not None,
            replica_error=replica_error,
            server_running=server_running,
            in_recovery=replica.in_recovery if replica else None,
            streaming=verdict.ok,
            streaming_seen=verdict.seen,
            timeline=timeline if isinstance(timeline, int) else None,
            receive_lsn=receive,
            replay_lsn=replay,
            controldata=control,
            slot=node.slot,
            slot_exists=slot is not None,
            slot_restart_lsn=slot.restart_lsn if slot else None,
            slot_wal_status=slot.wal_status if slot else None,
            needed_lsn=needed,
            wal_available=wal_available,
            wal_note=wal_note,
            settings=settings,
            conninfo=conninfo,
            expected_host=node.replication.host,
            expected_port=str(node.replication.port),
            primary_slot_name=head.get("setting.primary_slot_name", ""),
            standby_signal=head.get("standby_signal", "") == "yes",
            refusals=refusals,
            application_name=application_name,
            auto_conf=auto_conf,
            auto_conf_path=str(auto_conf_path(node)),
            divergence=classify_by_timeline(
                timeline if isinstance(timeline, int) else None, primary_timeline, needed
            ),
            system_identifier=replica_sysid,
            primary_system_identifier=primary_sysid,
            alter_system_missing=alter_missing,
        )

    async def _alter_system_missing(
        self, node: NodeConfig, settings: list[str], standby: list[str]
    ) -> tuple[str, ...] | None:
        """What the bot's role lacks to ALTER SYSTEM SET the low ``settings`` and the wrong
        ``standby`` values on the running replica (the parameters path restarts it: no
        reload grant needed unless a standby value is set — the resume path reloads); on
        17+ also ``allow_alter_system`` must be on. None when it could not be read."""
        try:
            missing: list[str] = []
            for name in settings + standby:
                missing += [
                    m
                    for m in await self._pg.missing_alter_system_privileges(node, name)
                    if ("pg_reload_conf" not in m or standby) and m not in missing
                ]
            rows = await self._pg.execute(
                node,
                "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'allow_alter_system'",
            )
        except ReplbotError:
            return None
        if rows and str(rows[0][0]) != "on":
            missing.append("allow_alter_system = on")
        return tuple(missing)

    async def _system_identifier(self, node: NodeConfig) -> str | None:
        """pg_control's system identifier as the running server reports it (None: unknown)."""
        try:
            rows = await self._pg.execute(
                node, "SELECT system_identifier::text FROM pg_catalog.pg_control_system()"
            )
        except ReplbotError:
            return None
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    async def _wal_available(
        self,
        primary_node: NodeConfig,
        slot: SlotInfo | None,
        needed: str | None,
        primary: NodeSnapshot | None,
    ) -> tuple[bool | None, str]:
        """Whether the primary still has the WAL from ``needed`` on: the slot keeps it, or
        the oldest segment in pg_ls_waldir() is not newer than the one holding it."""
        if primary is None:
            return None, "primary_down"
        if slot is not None and slot.wal_status == "lost":
            return False, "slot_lost"
        if slot is not None and slot.restart_lsn is not None:
            # the replica's own slot: it keeps everything the replica has not flushed yet
            return True, "slot_keeps"
        if needed is None:
            return None, "position_unknown"
        try:
            rows = await self._pg.execute(primary_node, WAL_SQL, (needed, _SEGMENT_RE))
        except NodeUnavailable:
            return None, "waldir_unreadable"
        wanted, oldest = (str(v) if v is not None else None for v in rows[0])
        if wanted is None or oldest is None:
            return None, "waldir_unreadable"
        return (wanted >= oldest), ("segment_present" if wanted >= oldest else "segment_removed")
