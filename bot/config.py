"""Configuration: one TOML file -> typed, frozen, validated objects.

Every problem is reported as :class:`bot.errors.ConfigError` whose key is the dotted path of the
offending value, e.g. ``clusters.main.nodes.pg2.slot: 'Pg-2' is not a valid slot name``.
Secrets (the bot token, node passwords) are held in :class:`Secret`, which never prints itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.adapters.conninfo import parse_conninfo
from bot.errors import ConfigError
from bot.models import NodeRole, Role
from bot.units import parse_bytes, parse_duration

SLOT_NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
APPLICATION_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
TOKEN_ENV = "REPLBOT_TELEGRAM_TOKEN"  # noqa: S105 (a variable name)
AUDIT_KEY_ENV = "REPLBOT_AUDIT_KEY"
AUDIT_KEY_MIN_CHARS = 32
DEFAULT_BASE_URL = "https://api.telegram.org/bot"


class Secret:
    """A string that must never be shown: ``str()``/``repr()`` give a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one adapter call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SshConfig:
    """How the bot reaches a replica host over SSH (host keys are always verified)."""

    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path


@dataclass(frozen=True)
class ReplicationSource:
    """How a replica host connects to its primary for pg_basebackup / streaming.

    The password lives on the replica host (``~/.pgpass`` or ``passfile``), never in the bot.
    """

    host: str
    port: int
    user: str
    passfile: Path | None = None

    def conninfo(self, **extra: str) -> str:
        """libpq keyword conninfo (no password) as the replica host uses it."""
        parts = {"host": self.host, "port": str(self.port), "user": self.user}
        if self.passfile is not None:
            parts["passfile"] = str(self.passfile)
        parts.update(extra)
        return " ".join(f"{k}={_conninfo_quote(v)}" for k, v in parts.items())


def _conninfo_quote(value: str) -> str:
    if value and all(c.isalnum() or c in "._-/:@" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class NodeConfig:
    """One PostgreSQL server of a cluster."""

    name: str
    role: NodeRole
    dsn: str
    password: Secret | None = None
    slot: str | None = None
    data_dir: Path | None = None
    pg_bin_dir: Path | None = None
    start_command: str | None = None
    stop_command: str | None = None
    ssh: SshConfig | None = None
    replication: ReplicationSource | None = None
    shell: str = "ssh"  # "ssh", or "local" (the demo: commands run on the bot's own host)
    conf_dir: Path | None = None  # where postgresql.conf lives, if not in data_dir (Debian)
    keep_files: tuple[str, ...] = ("postgresql.conf", "pg_hba.conf", "pg_ident.conf")
    max_rate: str | None = None  # pg_basebackup --max-rate, e.g. "50M"
    log_file: Path | None = None  # server log on the replica host, tailed when a start fails
    application_name: str | None = None  # the name a rebuilt replica streams under
    cluster: str = ""  # its cluster (set by the parser); (cluster, name) identifies a node

    @property
    def effective_conf_dir(self) -> Path | None:
        """The directory ``postgres -C`` reads the configuration from."""
        return self.conf_dir or self.data_dir

    @property
    def dsn_host(self) -> str:
        """The (first) host of the node's DSN, as libpq reads it; "localhost" if none."""
        host = parse_conninfo(self.dsn).get("host", "")
        return host.split(",")[0] or "localhost"


@dataclass(frozen=True)
class Thresholds:
    """When the monitor's rules fire (defaults drawn from pgMonitor, CNPG and check_postgres)."""

    node_down_polls: int = 2  # consecutive failed polls before "node down"
    lag_bytes_warning: int = 50 * 1024**2
    lag_bytes_critical: int = 100 * 1024**2
    lag_for_s: float = 60.0  # byte lag must last this long
    lag_time_warning_s: float = 30.0
    lag_time_critical_s: float = 300.0
    slot_inactive_after_s: float = 600.0
    slot_retained_warning: int = 1024**3
    slot_retained_critical: int = 5 * 1024**3
    # slotless replica: warn when its replay position is within this share of the WAL the
    # primary keeps (current LSN − oldest segment in pg_wal) from the oldest kept WAL
    slotless_margin_pct: float = 25.0


@dataclass(frozen=True)
class ClusterMonitor:
    """Per-cluster monitor settings: on/off, alert routing, threshold overrides."""

    enabled: bool = True
    alert_chat_ids: tuple[int, ...] | None = None  # None: telegram.alert_chat_ids
    message_thread_id: int | None = None  # a forum topic of those chats
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class ClusterConfig:
    """A primary and its replicas."""

    name: str
    nodes: tuple[NodeConfig, ...]
    monitor: ClusterMonitor = field(default_factory=ClusterMonitor)
    language: str | None = None  # its alerts' language (else telegram.language)

    @property
    def primary(self) -> NodeConfig:
        """The one node configured as primary."""
        return next(n for n in self.nodes if n.role is NodeRole.PRIMARY)

    @property
    def replicas(self) -> tuple[NodeConfig, ...]:
        """The nodes configured as replicas, in config order."""
        return tuple(n for n in self.nodes if n.role is NodeRole.REPLICA)

    def node(self, name: str) -> NodeConfig | None:
        """The node called ``name``, or None."""
        return next((n for n in self.nodes if n.name == name), None)


LANGUAGES = ("en", "ru")  # the reply languages with a message catalog (handlers/locale)


def _opt_language(table: Mapping[str, Any], key: str) -> str | None:
    """An optional ``language`` key: one of LANGUAGES."""
    value = _opt_str(table, key, "language")
    if value is not None and value not in LANGUAGES:
        raise ConfigError(f"{key}.language", f"{value!r} is not one of {', '.join(LANGUAGES)}")
    return value


@dataclass(frozen=True)
class UserConfig:
    """A Telegram user allowed to talk to the bot."""

    id: int
    name: str
    role: Role
    language: str | None = None  # replies to this user, unless they chose one with /lang


@dataclass(frozen=True)
class TelegramConfig:
    """Bot API access and chat policy."""

    token: Secret | None = None
    base_url: str = DEFAULT_BASE_URL
    alert_chat_ids: tuple[int, ...] = ()
    allowed_chat_ids: tuple[int, ...] = ()
    confirm_timeout_s: float = 60.0
    alert_fallback_chat_id: int | None = None  # where messages a chat refuses for good go
    offline_grace_s: float = 30.0  # commands older than the bot's start minus this are not run
    language: str = "en"  # replies when nothing closer says (user, Telegram client), alerts


@dataclass(frozen=True)
class AuditConfig:
    """Where the audit log lives, and the HMAC key of its hash chain.

    ``key`` comes from ``REPLBOT_AUDIT_KEY`` or ``key_file``; when neither is set the bot uses
    (and on first start creates) a key file beside the database, see
    :func:`bot.adapters.audit_sqlite.resolve_audit_key`.
    """

    path: Path
    key: Secret | None = None
    key_file: Path | None = None
    anchor_every: int = 100  # log "audit head: rows=N hash=H" every this many rows

    @property
    def key_source(self) -> str:
        """Where the key comes from, for check-config and logs (never the key itself)."""
        if self.key is not None and self.key_file is None:
            return f"env {AUDIT_KEY_ENV}"
        if self.key_file is not None:
            return f"key file {self.key_file}"
        return "key file beside the database (created on first start)"


@dataclass(frozen=True)
class RebuildConfig:
    """Knobs of /rebuild, with safe defaults."""

    require_second_approver: bool = False
    verify_timeout_s: float = 120.0
    command_timeout_s: float = 120.0
    progress_interval_s: float = 3.0
    disk_headroom: float = 1.1  # free space needed = primary size × this


@dataclass(frozen=True)
class MonitorConfig:
    """The background monitor and the delivery of its alerts."""

    enabled: bool = True
    interval_s: float = 5.0  # every node is polled this often
    timeout_s: float = 3.0  # connect + query, per node and poll
    repeat_interval_s: float = 3600.0  # a firing, unacknowledged alert is repeated this often
    mute_button_s: float = 3600.0  # what the "Mute" button of an alert mutes it for
    send_timeout_s: float = 10.0  # one Bot API call
    send_retry_initial_s: float = 1.0  # first back-off after a 5xx / timeout, doubled each time
    send_retry_max_s: float = 60.0  # back-off cap
    thresholds: Thresholds = field(default_factory=Thresholds)
    retention_days: float = 90.0  # sent outbox rows and resolved alerts older than this go
    alert_charts: bool = True  # alerts about lag or slot growth attach a small chart


@dataclass(frozen=True)
class MetricsConfig:
    """The opt-in Prometheus endpoint; ``host`` None means off."""

    host: str | None = None
    port: int = 9187


@dataclass(frozen=True)
class HealthConfig:
    """An optional listener serving only ``/healthz``; ``host`` None means none (the metrics
    listener serves /healthz too)."""

    host: str | None = None
    port: int = 9188


@dataclass(frozen=True)
class AppConfig:
    """The whole validated configuration."""

    telegram: TelegramConfig
    audit: AuditConfig
    users: tuple[UserConfig, ...]
    clusters: tuple[ClusterConfig, ...]
    query_timeout_s: float = 10.0
    rebuild: RebuildConfig = field(default_factory=RebuildConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)

    def cluster(self, name: str) -> ClusterConfig | None:
        """The cluster called ``name``, or None."""
        return next((c for c in self.clusters if c.name == name), None)

    def all_alert_chat_ids(self) -> tuple[int, ...]:
        """Every chat any cluster's alerts go to (telegram's and the clusters' own), once."""
        chats = [*self.telegram.alert_chat_ids]
        for cluster in self.clusters:
            chats.extend(cluster.monitor.alert_chat_ids or ())
        return tuple(dict.fromkeys(chats))

    def alert_route(self, cluster: str) -> tuple[tuple[int, ...], int | None]:
        """(chat ids, forum topic id) that the alerts of ``cluster`` go to."""
        found = self.cluster(cluster)
        if found is None:
            return self.telegram.alert_chat_ids, None
        chats = found.monitor.alert_chat_ids
        return (
            self.telegram.alert_chat_ids if chats is None else chats,
            found.monitor.message_thread_id,
        )


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate the TOML file at ``path``; raise ConfigError naming the bad key."""
    env = os.environ if environ is None else environ
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file ({exc.strerror})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    return parse_config(data, env)


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str]) -> AppConfig:
    """Validate an already-parsed TOML document (see :func:`load_config`)."""
    _only_keys(
        "",
        data,
        {
            "telegram",
            "audit",
            "users",
            "clusters",
            "bot",
            "rebuild",
            "monitor",
            "metrics",
            "health",
        },
    )
    telegram = _parse_telegram(_table(data, "telegram", required=False), environ)
    audit = _parse_audit(_table(data, "audit"), environ)
    bot_table = _table(data, "bot", required=False)
    _only_keys("bot", bot_table, {"query_timeout"})
    query_timeout = _number(bot_table, "bot", "query_timeout", default=10.0, minimum=0.5)

    users = _parse_users(data.get("users", []))
    monitor = _parse_monitor(_table(data, "monitor", required=False))
    clusters = _parse_clusters(data.get("clusters"), environ, monitor.thresholds)
    return AppConfig(
        telegram=telegram,
        audit=audit,
        users=users,
        clusters=clusters,
        query_timeout_s=query_timeout,
        rebuild=_parse_rebuild(_table(data, "rebuild", required=False)),
        monitor=monitor,
        metrics=_parse_metrics(_table(data, "metrics", required=False)),
        health=_parse_health(_table(data, "health", required=False)),
    )


# --- [audit] ----------------------------------------------------------------------------------


def _parse_audit(table: Mapping[str, Any], environ: Mapping[str, str]) -> AuditConfig:
    _only_keys("audit", table, {"path", "key_file", "anchor_every"})
    key_file = _opt_abs_path(table, "audit", "key_file")
    anchor_every = table.get("anchor_every", 100)
    if not isinstance(anchor_every, int) or isinstance(anchor_every, bool) or anchor_every < 1:
        raise ConfigError("audit.anchor_every", "must be a whole number of rows ≥ 1")
    env_key = environ.get(AUDIT_KEY_ENV)
    if env_key:
        key: Secret | None = audit_key_text(env_key, AUDIT_KEY_ENV)
        key_file = None  # the environment wins; say so in check-config
    elif key_file is not None:
        key = read_audit_key_file(key_file, "audit.key_file")
    else:
        key = None
    return AuditConfig(
        path=Path(_str(table, "audit", "path")),
        key=key,
        key_file=key_file,
        anchor_every=anchor_every,
    )


def audit_key_text(text: str, key_name: str) -> Secret:
    """Validate the text of an audit key (error names ``key_name``, never shows the key)."""
    value = text.strip()
    if len(value) < AUDIT_KEY_MIN_CHARS:
        raise ConfigError(
            key_name,
            f"audit key too short ({len(value)} characters, at least {AUDIT_KEY_MIN_CHARS}; "
            "e.g. openssl rand -hex 32)",
        )
    return Secret(value)


def read_audit_key_file(path: Path, key_name: str) -> Secret:
    """Read an audit key file; refuse one that group or others may read or write."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(
                key_name,
                f"{path} is readable or writable by group/others (mode {mode & 0o777:04o}); "
                f"chmod 600 {path}",
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(key_name, f"cannot read {path} ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(key_name, f"{path} is not UTF-8 text") from exc
    return audit_key_text(text, key_name)


# --- [monitor], [clusters.monitor], [metrics] ------------------------------------------------

_THRESHOLD_KEYS = {
    "node_down_polls",
    "lag_bytes_warning",
    "lag_bytes_critical",
    "lag_for",
    "lag_time_warning",
    "lag_time_critical",
    "slot_inactive_after",
    "slot_retained_warning",
    "slot_retained_critical",
    "slotless_margin_pct",
}


def _parse_monitor(table: Mapping[str, Any]) -> MonitorConfig:
    key = "monitor"
    _only_keys(
        key,
        table,
        {
            "enabled",
            "interval",
            "timeout",
            "repeat_interval",
            "mute_duration",
            "send_timeout",
            "send_retry_initial",
            "send_retry_max",
            "retention_days",
            "alert_charts",
            *_THRESHOLD_KEYS,
        },
    )
    defaults = MonitorConfig()
    retry_initial = _duration(table, key, "send_retry_initial", defaults.send_retry_initial_s, 0.01)
    retry_max = _duration(table, key, "send_retry_max", defaults.send_retry_max_s, 0.01)
    if retry_max < retry_initial:
        raise ConfigError(f"{key}.send_retry_max", "must not be smaller than send_retry_initial")
    return MonitorConfig(
        enabled=_bool(table, key, "enabled", True),
        interval_s=_duration(table, key, "interval", defaults.interval_s, 0.05),
        timeout_s=_duration(table, key, "timeout", defaults.timeout_s, 0.1),
        repeat_interval_s=_duration(table, key, "repeat_interval", defaults.repeat_interval_s, 1),
        mute_button_s=_duration(table, key, "mute_duration", defaults.mute_button_s, 1),
        send_timeout_s=_duration(table, key, "send_timeout", defaults.send_timeout_s, 0.1),
        send_retry_initial_s=retry_initial,
        send_retry_max_s=retry_max,
        thresholds=_parse_thresholds(key, table, Thresholds()),
        retention_days=_number(table, key, "retention_days", default=90.0, minimum=1),
        alert_charts=_bool(table, key, "alert_charts", True),
    )


def _parse_thresholds(key: str, table: Mapping[str, Any], base: Thresholds) -> Thresholds:
    polls = table.get("node_down_polls", base.node_down_polls)
    if not isinstance(polls, int) or isinstance(polls, bool) or polls < 1:
        raise ConfigError(f"{key}.node_down_polls", "must be a whole number ≥ 1")
    result = Thresholds(
        node_down_polls=polls,
        lag_bytes_warning=_size(table, key, "lag_bytes_warning", base.lag_bytes_warning),
        lag_bytes_critical=_size(table, key, "lag_bytes_critical", base.lag_bytes_critical),
        lag_for_s=_duration(table, key, "lag_for", base.lag_for_s, 0),
        lag_time_warning_s=_duration(table, key, "lag_time_warning", base.lag_time_warning_s, 0),
        lag_time_critical_s=_duration(table, key, "lag_time_critical", base.lag_time_critical_s, 0),
        slot_inactive_after_s=_duration(
            table, key, "slot_inactive_after", base.slot_inactive_after_s, 0
        ),
        slot_retained_warning=_size(
            table, key, "slot_retained_warning", base.slot_retained_warning
        ),
        slot_retained_critical=_size(
            table, key, "slot_retained_critical", base.slot_retained_critical
        ),
        slotless_margin_pct=_number(table, key, "slotless_margin_pct", base.slotless_margin_pct, 0),
    )
    if result.slotless_margin_pct > 100:
        raise ConfigError(f"{key}.slotless_margin_pct", "must be a percentage from 0 to 100")
    pairs = (
        ("lag_bytes", result.lag_bytes_warning, result.lag_bytes_critical),
        ("lag_time", result.lag_time_warning_s, result.lag_time_critical_s),
        ("slot_retained", result.slot_retained_warning, result.slot_retained_critical),
    )
    for name, warning, critical in pairs:
        if critical < warning:
            raise ConfigError(f"{key}.{name}_critical", f"must not be smaller than {name}_warning")
    return result


def _parse_cluster_monitor(key: str, value: Any, defaults: Thresholds) -> ClusterMonitor:
    if value is None:
        return ClusterMonitor(thresholds=defaults)
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    _only_keys(key, value, {"enabled", "alert_chat_ids", "message_thread_id", *_THRESHOLD_KEYS})
    thread = value.get("message_thread_id")
    if thread is not None and (not isinstance(thread, int) or isinstance(thread, bool)):
        raise ConfigError(f"{key}.message_thread_id", "must be a numeric forum topic id")
    return ClusterMonitor(
        enabled=_bool(value, key, "enabled", True),
        alert_chat_ids=_int_list(value, key, "alert_chat_ids")
        if "alert_chat_ids" in value
        else None,
        message_thread_id=thread,
        thresholds=_parse_thresholds(key, value, defaults),
    )


def _parse_metrics(table: Mapping[str, Any]) -> MetricsConfig:
    key = "metrics"
    _only_keys(key, table, {"listen"})
    listen = _opt_str(table, key, "listen")
    if listen is None:
        return MetricsConfig()
    return MetricsConfig(*_listen_address(key, listen, 9187))


def _parse_health(table: Mapping[str, Any]) -> HealthConfig:
    key = "health"
    _only_keys(key, table, {"listen"})
    listen = _opt_str(table, key, "listen")
    if listen is None:
        return HealthConfig()
    return HealthConfig(*_listen_address(key, listen, 9188))


def _listen_address(key: str, listen: str, example_port: int) -> tuple[str, int]:
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:  # 0: any free
        raise ConfigError(
            f"{key}.listen", f"{listen!r} is not HOST:PORT like 127.0.0.1:{example_port}"
        )
    return host, int(port_text)


def _parse_rebuild(table: Mapping[str, Any]) -> RebuildConfig:
    key = "rebuild"
    _only_keys(
        key,
        table,
        {
            "require_second_approver",
            "verify_timeout",
            "command_timeout",
            "progress_interval",
            "disk_headroom",
        },
    )
    approver = table.get("require_second_approver", False)
    if not isinstance(approver, bool):
        raise ConfigError(f"{key}.require_second_approver", "must be true or false")
    return RebuildConfig(
        require_second_approver=approver,
        verify_timeout_s=_number(table, key, "verify_timeout", default=120.0, minimum=5),
        command_timeout_s=_number(table, key, "command_timeout", default=120.0, minimum=5),
        progress_interval_s=_number(table, key, "progress_interval", default=3.0, minimum=0.5),
        disk_headroom=_number(table, key, "disk_headroom", default=1.1, minimum=1.0),
    )


def _parse_telegram(table: Mapping[str, Any], environ: Mapping[str, str]) -> TelegramConfig:
    _only_keys(
        "telegram",
        table,
        {
            "token",
            "base_url",
            "alert_chat_ids",
            "allowed_chat_ids",
            "confirm_timeout",
            "alert_fallback_chat_id",
            "offline_grace",
            "language",
        },
    )
    fallback = table.get("alert_fallback_chat_id")
    if fallback is not None and (
        not isinstance(fallback, int) or isinstance(fallback, bool) or fallback == 0
    ):
        raise ConfigError("telegram.alert_fallback_chat_id", "must be a numeric chat id")
    token_text = environ.get(TOKEN_ENV) or _opt_str(table, "telegram", "token")
    token = Secret(token_text) if token_text else None
    base_url = _opt_str(table, "telegram", "base_url") or DEFAULT_BASE_URL
    if not re.match(r"^https?://[^\s/]+", base_url):
        raise ConfigError("telegram.base_url", f"{base_url!r} is not an http(s) URL")
    return TelegramConfig(
        token=token,
        base_url=base_url,
        alert_chat_ids=_int_list(table, "telegram", "alert_chat_ids"),
        allowed_chat_ids=_int_list(table, "telegram", "allowed_chat_ids"),
        confirm_timeout_s=_number(table, "telegram", "confirm_timeout", default=60.0, minimum=5),
        alert_fallback_chat_id=fallback,
        offline_grace_s=_number(table, "telegram", "offline_grace", default=30.0, minimum=0),
        language=_opt_language(table, "telegram") or "en",
    )


def _parse_users(value: Any) -> tuple[UserConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError("users", "must be an array of tables ([[users]])")
    users: list[UserConfig] = []
    seen: set[int] = set()
    for index, item in enumerate(value):
        key = f"users[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(key, "must be a table")
        _only_keys(key, item, {"id", "name", "role", "language"})
        user_id = item.get("id")
        if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
            raise ConfigError(f"{key}.id", "must be a positive numeric Telegram user id")
        if user_id in seen:
            raise ConfigError(f"{key}.id", f"duplicate user id {user_id}")
        seen.add(user_id)
        name = _str(item, key, "name")
        role_text = _str(item, key, "role")
        try:
            role = Role.parse(role_text)
        except ValueError:
            raise ConfigError(
                f"{key}.role", f"unknown role {role_text!r} (viewer, operator, admin)"
            ) from None
        users.append(
            UserConfig(id=user_id, name=name, role=role, language=_opt_language(item, key))
        )
    return tuple(users)


def _parse_clusters(
    value: Any, environ: Mapping[str, str], thresholds: Thresholds
) -> tuple[ClusterConfig, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError("clusters", "missing: at least one [[clusters]] table is required")
    clusters: list[ClusterConfig] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"clusters[{index}]", "must be a table")
        name = item.get("name")
        key = f"clusters.{name}" if isinstance(name, str) and name else f"clusters[{index}]"
        _only_keys(key, item, {"name", "nodes", "monitor", "language"})
        name = _str(item, key, "name")
        if not NODE_NAME_RE.match(name):
            raise ConfigError(f"{key}.name", f"{name!r} is not a valid name")
        if name in names:
            raise ConfigError(f"{key}.name", f"duplicate cluster name {name!r}")
        names.add(name)
        clusters.append(
            ClusterConfig(
                name=name,
                nodes=_parse_nodes(key, item.get("nodes"), environ, name),
                monitor=_parse_cluster_monitor(f"{key}.monitor", item.get("monitor"), thresholds),
                language=_opt_language(item, key),
            )
        )
    return tuple(clusters)


def _parse_nodes(
    cluster_key: str, value: Any, environ: Mapping[str, str], cluster: str = ""
) -> tuple[NodeConfig, ...]:
    key = f"{cluster_key}.nodes"
    if not isinstance(value, list) or not value:
        raise ConfigError(key, "missing: a cluster needs [[clusters.nodes]] tables")
    nodes: list[NodeConfig] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{key}[{index}]", "must be a table")
        raw_name = item.get("name")
        node_key = (
            f"{key}.{raw_name}" if isinstance(raw_name, str) and raw_name else f"{key}[{index}]"
        )
        node = dataclasses.replace(_parse_node(node_key, item, environ), cluster=cluster)
        if node.name in names:
            raise ConfigError(f"{node_key}.name", f"duplicate node name {node.name!r}")
        names.add(node.name)
        nodes.append(node)
    primaries = [n for n in nodes if n.role is NodeRole.PRIMARY]
    if len(primaries) != 1:
        raise ConfigError(
            key, f"exactly one node must have role = 'primary' (found {len(primaries)})"
        )
    slots = [n.slot for n in nodes if n.slot]
    duplicate_slots = {s for s in slots if slots.count(s) > 1}
    if duplicate_slots:
        raise ConfigError(key, f"slot {sorted(duplicate_slots)[0]!r} is used by two replicas")
    return tuple(nodes)


_NODE_KEYS = {
    "name",
    "role",
    "dsn",
    "password_env",
    "slot",
    "data_dir",
    "pg_bin_dir",
    "start_command",
    "stop_command",
    "ssh",
    "replication",
    "shell",
    "conf_dir",
    "keep_files",
    "max_rate",
    "log_file",
    "application_name",
}


def _parse_node(key: str, item: Mapping[str, Any], environ: Mapping[str, str]) -> NodeConfig:
    _only_keys(key, item, _NODE_KEYS)
    name = _str(item, key, "name")
    if not NODE_NAME_RE.match(name):
        raise ConfigError(f"{key}.name", f"{name!r} is not a valid node name")
    role_text = _str(item, key, "role")
    try:
        role = NodeRole(role_text)
    except ValueError:
        raise ConfigError(
            f"{key}.role", f"unknown node role {role_text!r} (primary, replica)"
        ) from None
    dsn = _str(item, key, "dsn")
    try:
        dsn_fields = parse_conninfo(dsn)
    except ValueError as exc:
        raise ConfigError(f"{key}.dsn", f"not a libpq connection string: {exc}") from None
    if "password" in dsn_fields:
        raise ConfigError(
            f"{key}.dsn", "must not contain a password; use password_env or a passfile (~/.pgpass)"
        )
    password: Secret | None = None
    password_env = _opt_str(item, key, "password_env")
    if password_env is not None:
        value = environ.get(password_env)
        if not value:
            raise ConfigError(
                f"{key}.password_env", f"environment variable {password_env} is not set"
            )
        password = Secret(value)
    slot = _opt_str(item, key, "slot")
    if slot is not None and not SLOT_NAME_RE.match(slot):
        raise ConfigError(
            f"{key}.slot", f"{slot!r} is not a valid slot name (lower-case letters, digits, _; ≤63)"
        )
    if role is NodeRole.PRIMARY and slot is not None:
        raise ConfigError(f"{key}.slot", "only replicas have a slot")
    shell = _opt_str(item, key, "shell") or "ssh"
    if shell not in {"ssh", "local"}:
        raise ConfigError(f"{key}.shell", f"{shell!r} is not 'ssh' or 'local'")
    keep_files = _keep_files(item, key)
    max_rate = _opt_str(item, key, "max_rate")
    if max_rate is not None and not re.match(r"^[0-9]+[kM]?$", max_rate):
        raise ConfigError(f"{key}.max_rate", f"{max_rate!r} is not a rate like 32k or 50M")
    application_name = _opt_str(item, key, "application_name")
    if application_name is not None and not APPLICATION_NAME_RE.match(application_name):
        raise ConfigError(
            f"{key}.application_name",
            f"{application_name!r} is not a valid application_name (letters, digits, _ . -; ≤63)",
        )
    return NodeConfig(
        name=name,
        role=role,
        dsn=dsn,
        password=password,
        slot=slot,
        data_dir=_opt_abs_path(item, key, "data_dir"),
        pg_bin_dir=_opt_abs_path(item, key, "pg_bin_dir"),
        start_command=_opt_str(item, key, "start_command"),
        stop_command=_opt_str(item, key, "stop_command"),
        ssh=_parse_ssh(f"{key}.ssh", item.get("ssh")),
        replication=_parse_replication(f"{key}.replication", item.get("replication")),
        shell=shell,
        conf_dir=_opt_abs_path(item, key, "conf_dir"),
        keep_files=keep_files,
        max_rate=max_rate,
        log_file=_opt_abs_path(item, key, "log_file"),
        application_name=application_name,
    )


def _keep_files(item: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = item.get("keep_files")
    if value is None:
        return NodeConfig.keep_files
    if not isinstance(value, list) or not all(
        isinstance(v, str)
        and re.match(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", v)
        and ".." not in v.split("/")
        for v in value
    ):
        raise ConfigError(
            f"{key}.keep_files", "must be an array of paths relative to the data directory"
        )
    return tuple(value)


def _parse_ssh(key: str, value: Any) -> SshConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    _only_keys(key, value, {"host", "port", "user", "key_file", "known_hosts"})
    key_file = _opt_abs_path(value, key, "key_file")
    known_hosts = _opt_abs_path(value, key, "known_hosts")
    if key_file is None:
        raise ConfigError(f"{key}.key_file", "missing")
    if known_hosts is None:
        raise ConfigError(f"{key}.known_hosts", "missing (host keys are always verified)")
    return SshConfig(
        host=_str(value, key, "host"),
        port=_port(value, key, default=22),
        user=_str(value, key, "user"),
        key_file=key_file,
        known_hosts=known_hosts,
    )


def _parse_replication(key: str, value: Any) -> ReplicationSource | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    _only_keys(key, value, {"host", "port", "user", "passfile"})
    return ReplicationSource(
        host=_str(value, key, "host"),
        port=_port(value, key, default=5432),
        user=_str(value, key, "user"),
        passfile=_opt_abs_path(value, key, "passfile"),
    )


# --- small typed readers; each raises ConfigError with the full key -------------------------


def _only_keys(key: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise ConfigError(where, "unknown key")


def _table(data: Mapping[str, Any], key: str, required: bool = True) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError(key, "missing")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _str(table: Mapping[str, Any], key: str, name: str) -> str:
    value = table.get(name)
    if value is None:
        raise ConfigError(f"{key}.{name}", "missing")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}.{name}", "must be a non-empty string")
    return value


def _opt_str(table: Mapping[str, Any], key: str, name: str) -> str | None:
    if table.get(name) is None:
        return None
    return _str(table, key, name)


def _opt_abs_path(table: Mapping[str, Any], key: str, name: str) -> Path | None:
    text = _opt_str(table, key, name)
    if text is None:
        return None
    if not text.startswith("/"):
        raise ConfigError(f"{key}.{name}", f"{text!r} must be an absolute path")
    return Path(text)


def _port(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get("port", default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ConfigError(f"{key}.port", "must be a TCP port number (1-65535)")
    return value


def _number(table: Mapping[str, Any], key: str, name: str, default: float, minimum: float) -> float:
    value = table.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}.{name}", f"must be a number ≥ {minimum}")
    return float(value)


def _int_list(table: Mapping[str, Any], key: str, name: str) -> tuple[int, ...]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"{key}.{name}", "must be an array of numeric chat ids")
    return tuple(value)


def _bool(table: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
    value = table.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}.{name}", "must be true or false")
    return value


def _duration(
    table: Mapping[str, Any], key: str, name: str, default: float, minimum: float
) -> float:
    value = table.get(name, default)
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.{name}", f'{exc} (e.g. "30s", "10min", "1h")') from None
    if seconds < minimum:
        raise ConfigError(f"{key}.{name}", f"must be at least {minimum:g} s")
    return seconds


def _size(table: Mapping[str, Any], key: str, name: str, default: int) -> int:
    value = table.get(name, default)
    try:
        return parse_bytes(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.{name}", f'{exc} (e.g. "50MB", "1GB")') from None
