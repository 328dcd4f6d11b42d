"""Config validation: typed objects from valid TOML, ConfigError naming the exact key otherwise."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import AppConfig, Secret, load_config, parse_config
from bot.errors import ConfigError
from bot.models import NodeRole, Role

PASSWORD_ENV = "REPLBOT_UNIT_CFG_PASSWORD"
PASSWORD = "pg-pass-Xy7-very-secret"
FILE_TOKEN = "111111:FILE-token-abcdefghijklmnop"
ENV_TOKEN = "222222:ENV-token-qrstuvwxyzabcdef"

VALID_TOML = f"""
[telegram]
token = "{FILE_TOKEN}"
alert_chat_ids = [-100123]
allowed_chat_ids = [-100123, 1001]
confirm_timeout = 45

[audit]
path = "/var/lib/replbot/audit.sqlite3"

[bot]
query_timeout = 5

[[users]]
id = 1001
name = "alice"
role = "admin"

[[users]]
id = 1002
name = "oscar"
role = "Operator"

[[clusters]]
name = "main"

[[clusters.nodes]]
name = "pg1"
role = "primary"
dsn = "host=db1 port=5432 user=replbot dbname=postgres"
password_env = "{PASSWORD_ENV}"

[[clusters.nodes]]
name = "pg2"
role = "replica"
dsn = "host=db2 port=5432 user=replbot dbname=postgres"
password_env = "{PASSWORD_ENV}"
slot = "pg2"
data_dir = "/var/lib/postgresql/16/main"
pg_bin_dir = "/usr/lib/postgresql/16/bin"

[clusters.nodes.ssh]
host = "db2"
user = "postgres"
key_file = "/etc/replbot/id_ed25519"
known_hosts = "/etc/replbot/known_hosts"

[clusters.nodes.replication]
host = "db1"
user = "repluser"
"""

ENV = {PASSWORD_ENV: PASSWORD}


def valid_data() -> dict[str, Any]:
    """A fresh, mutable copy of the valid document."""
    return copy.deepcopy(tomllib.loads(VALID_TOML))


def node(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in data["clusters"][0]["nodes"] if n["name"] == name)
    return found


def test_valid_config_parses_into_typed_frozen_objects() -> None:
    config = parse_config(valid_data(), ENV)

    assert isinstance(config, AppConfig)
    assert config.telegram.token == Secret(FILE_TOKEN)
    assert config.telegram.alert_chat_ids == (-100123,)
    assert config.telegram.allowed_chat_ids == (-100123, 1001)
    assert config.telegram.confirm_timeout_s == 45.0
    assert config.audit.path == Path("/var/lib/replbot/audit.sqlite3")
    assert config.query_timeout_s == 5.0
    assert [(u.id, u.name, u.role) for u in config.users] == [
        (1001, "alice", Role.ADMIN),
        (1002, "oscar", Role.OPERATOR),
    ]
    main = config.cluster("main")
    assert main is not None
    assert main.primary.name == "pg1"
    assert main.primary.role is NodeRole.PRIMARY
    assert [r.name for r in main.replicas] == ["pg2"]
    pg2 = main.node("pg2")
    assert pg2 is not None
    assert pg2.slot == "pg2"
    assert pg2.password is not None and pg2.password.reveal() == PASSWORD
    assert pg2.data_dir == Path("/var/lib/postgresql/16/main")
    assert pg2.ssh is not None
    assert (pg2.ssh.host, pg2.ssh.port, pg2.ssh.user) == ("db2", 22, "postgres")
    assert pg2.ssh.key_file == Path("/etc/replbot/id_ed25519")
    assert pg2.ssh.known_hosts == Path("/etc/replbot/known_hosts")
    assert pg2.replication is not None
    assert (pg2.replication.host, pg2.replication.port) == ("db1", 5432)
    with pytest.raises(AttributeError):
        pg2.slot = "other"  # type: ignore[misc]


def _add_top_level(d: dict[str, Any]) -> None:
    d["colour"] = "blue"


def _add_node_key(d: dict[str, Any]) -> None:
    node(d, "pg2")["colour"] = "blue"


def _duplicate_node(d: dict[str, Any]) -> None:
    d["clusters"][0]["nodes"].append(
        {"name": "pg2", "role": "replica", "dsn": "host=db3 user=replbot", "slot": "pg3"}
    )


def _no_primary(d: dict[str, Any]) -> None:
    node(d, "pg1")["role"] = "replica"


def _two_primaries(d: dict[str, Any]) -> None:
    del node(d, "pg2")["slot"]
    node(d, "pg2")["role"] = "primary"


def _bad_slot(d: dict[str, Any]) -> None:
    node(d, "pg2")["slot"] = "Pg-2"


def _unknown_user_role(d: dict[str, Any]) -> None:
    d["users"][1]["role"] = "superuser"


def _string_user_id(d: dict[str, Any]) -> None:
    d["users"][0]["id"] = "1001"


def _dsn_keyvalue_password(d: dict[str, Any]) -> None:
    node(d, "pg1")["dsn"] = "host=db1 user=replbot password=hunter2 dbname=postgres"


def _dsn_not_a_conninfo(d: dict[str, Any]) -> None:
    node(d, "pg1")["dsn"] = "db1:5432"  # libpq: missing "=" after "db1:5432"


def _dsn_keyvalue_password_spaced(d: dict[str, Any]) -> None:
    node(d, "pg1")["dsn"] = "host=db1 user=replbot password = 'hunter2' dbname=postgres"


def _dsn_uri_password(d: dict[str, Any]) -> None:
    node(d, "pg1")["dsn"] = "postgresql://replbot:hunter2@db1:5432/postgres"


def _dsn_uri_query_password(d: dict[str, Any]) -> None:
    # libpq accepts every connection keyword as a URI query parameter, password included
    node(d, "pg1")["dsn"] = "postgresql://replbot@db1:5432/postgres?password=hunter2"


def _unset_password_env(d: dict[str, Any]) -> None:
    node(d, "pg1")["password_env"] = "REPLBOT_UNIT_CFG_NOT_SET"


def _relative_key_file(d: dict[str, Any]) -> None:
    node(d, "pg2")["ssh"]["key_file"] = "keys/id_ed25519"


def _missing_known_hosts(d: dict[str, Any]) -> None:
    del node(d, "pg2")["ssh"]["known_hosts"]


def _bad_application_name(d: dict[str, Any]) -> None:
    node(d, "pg2")["application_name"] = "pg2; DROP"


INVALID_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown top-level key", _add_top_level, "colour"),
    ("unknown node key", _add_node_key, "clusters.main.nodes.pg2.colour"),
    ("duplicate node name", _duplicate_node, "clusters.main.nodes.pg2.name"),
    ("zero primaries", _no_primary, "clusters.main.nodes"),
    ("two primaries", _two_primaries, "clusters.main.nodes"),
    ("invalid slot name", _bad_slot, "clusters.main.nodes.pg2.slot"),
    ("unknown user role", _unknown_user_role, "users[1].role"),
    ("non-numeric user id", _string_user_id, "users[0].id"),
    ("dsn password key=value", _dsn_keyvalue_password, "clusters.main.nodes.pg1.dsn"),
    ("dsn not a conninfo", _dsn_not_a_conninfo, "clusters.main.nodes.pg1.dsn"),
    ("dsn password key = 'value'", _dsn_keyvalue_password_spaced, "clusters.main.nodes.pg1.dsn"),
    ("dsn password in URI userinfo", _dsn_uri_password, "clusters.main.nodes.pg1.dsn"),
    ("dsn password in URI query", _dsn_uri_query_password, "clusters.main.nodes.pg1.dsn"),
    ("password_env not set", _unset_password_env, "clusters.main.nodes.pg1.password_env"),
    ("relative ssh.key_file", _relative_key_file, "clusters.main.nodes.pg2.ssh.key_file"),
    ("missing ssh.known_hosts", _missing_known_hosts, "clusters.main.nodes.pg2.ssh.known_hosts"),
    (
        "invalid application_name",
        _bad_application_name,
        "clusters.main.nodes.pg2.application_name",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "key"),
    [pytest.param(mutate, key, id=case) for case, mutate, key in INVALID_CASES],
)
def test_invalid_config_raises_config_error_naming_the_key(
    mutate: Callable[[dict[str, Any]], None], key: str
) -> None:
    data = valid_data()
    mutate(data)

    with pytest.raises(ConfigError) as caught:
        parse_config(data, ENV)

    assert caught.value.key == key
    assert caught.value.user_message.startswith(f"{key}: ")


def test_dsn_password_error_does_not_repeat_the_password() -> None:
    data = valid_data()
    _dsn_keyvalue_password(data)

    with pytest.raises(ConfigError) as caught:
        parse_config(data, ENV)

    assert "hunter2" not in caught.value.user_message


def test_password_env_set_to_empty_string_counts_as_unset() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(valid_data(), {PASSWORD_ENV: ""})

    assert caught.value.key == "clusters.main.nodes.pg1.password_env"


def test_token_from_environment_overrides_the_file_token() -> None:
    config = parse_config(valid_data(), {**ENV, "REPLBOT_TELEGRAM_TOKEN": ENV_TOKEN})

    assert config.telegram.token is not None
    assert config.telegram.token.reveal() == ENV_TOKEN


def test_token_from_environment_is_used_when_the_file_has_none() -> None:
    data = valid_data()
    del data["telegram"]["token"]

    config = parse_config(data, {**ENV, "REPLBOT_TELEGRAM_TOKEN": ENV_TOKEN})

    assert config.telegram.token is not None
    assert config.telegram.token.reveal() == ENV_TOKEN


def test_secret_never_shows_its_value() -> None:
    secret = Secret("s3cr3t-value")
    shown = [
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret!s}",
        "%s %r" % (secret, secret),  # noqa: UP031 - the %-format path is what logging uses
        format(secret, ""),
        str([secret]),
        str({"password": secret}),
    ]

    for text in shown:
        assert "s3cr3t-value" not in text
        assert "***" in text


def test_config_objects_repr_masks_passwords_and_token() -> None:
    config = parse_config(valid_data(), ENV)

    text = repr(config)

    assert PASSWORD not in text
    assert FILE_TOKEN not in text


def test_load_config_of_missing_file_raises_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(missing, ENV)

    assert caught.value.key == str(missing)
    assert "cannot read" in caught.value.problem


def test_load_config_of_invalid_toml_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[telegram\ntoken = "x"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)

    assert caught.value.key == str(path)
    assert "not valid TOML" in caught.value.problem


def test_load_config_reads_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "replbot.toml"
    path.write_text(VALID_TOML)

    config = load_config(path, ENV)

    assert config.cluster("main") is not None


def test_check_config_cli_reports_a_bad_config_in_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv("REPLBOT_TELEGRAM_TOKEN", raising=False)
    path = tmp_path / "bad.toml"
    path.write_text(VALID_TOML.replace('slot = "pg2"', 'slot = "Pg-2"'))

    code = main(["check-config", "--config", str(path)])

    out, err = capsys.readouterr()
    assert code == 2  # usage or config error
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert "clusters.main.nodes.pg2.slot" in lines[0]


def test_check_config_cli_accepts_a_good_config_without_printing_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv("REPLBOT_TELEGRAM_TOKEN", raising=False)
    path = tmp_path / "good.toml"
    path.write_text(VALID_TOML)

    code = main(["check-config", "--config", str(path)])

    out, err = capsys.readouterr()
    assert code == 0
    assert "config ok" in out
    for secret in (PASSWORD, FILE_TOKEN, FILE_TOKEN.split(":")[1]):
        assert secret not in out
        assert secret not in err


def test_check_config_cli_does_not_print_a_token_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("REPLBOT_TELEGRAM_TOKEN", ENV_TOKEN)
    path = tmp_path / "good.toml"
    path.write_text(VALID_TOML)

    code = main(["check-config", "--config", str(path)])

    out, err = capsys.readouterr()
    assert code == 0
    assert "token ***" in out
    assert ENV_TOKEN not in out + err


@pytest.mark.parametrize("bad", ["-1001", True, 0, 1.5, [-1001]])
def test_alert_fallback_chat_id_must_be_one_numeric_chat_id(bad: object) -> None:
    data = valid_data()
    data["telegram"]["alert_fallback_chat_id"] = bad
    with pytest.raises(ConfigError) as caught:
        parse_config(data, ENV)
    assert caught.value.key == "telegram.alert_fallback_chat_id"


def test_alert_fallback_chat_id_is_optional_and_parsed() -> None:
    assert parse_config(valid_data(), ENV).telegram.alert_fallback_chat_id is None
    data = valid_data()
    data["telegram"]["alert_fallback_chat_id"] = -1005555
    assert parse_config(data, ENV).telegram.alert_fallback_chat_id == -1005555


def test_every_node_knows_its_cluster_so_same_named_nodes_stay_apart() -> None:
    data = valid_data()
    twin = copy.deepcopy(data["clusters"][0])
    twin["name"] = "billing"
    data["clusters"].append(twin)

    config = parse_config(data, {PASSWORD_ENV: PASSWORD})

    keys = [(n.cluster, n.name) for c in config.clusters for n in c.nodes]
    assert len(keys) == len(set(keys))
    assert {n.cluster for n in config.clusters[0].nodes} == {config.clusters[0].name}
    assert {n.cluster for n in config.clusters[1].nodes} == {"billing"}


def test_a_dsn_is_read_by_libpq_host_lists_and_uris_included() -> None:
    """The replica's host for /check's listen_addresses comes from libpq's own parse."""
    from bot.config import NodeConfig
    from bot.models import NodeRole

    def host(dsn: str) -> str:
        return NodeConfig(name="pg2", role=NodeRole.REPLICA, dsn=dsn).dsn_host

    assert host("host=db2 port=5433") == "db2"
    assert host("host='db2' user=x") == "db2"
    assert host("postgresql://u@db3:5433/postgres") == "db3"
    assert host("host=db4,db5 port=5432,5432") == "db4"
    assert host("dbname=postgres") == "localhost"
