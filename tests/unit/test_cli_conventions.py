"""The ``replbot`` command line follows the conventions an SRE expects: --version, a default
config path overridable by REPLBOT_CONFIG, --log-level / --log-format, documented exit codes,
and check-config showing the effective settings with secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import cli
from bot.cli import DEFAULT_CONFIG_PATH, EXIT_USAGE, main
from bot.logsetup import configure_logging
from bot.redact import Redactor
from tests.unit.test_config import FILE_TOKEN, PASSWORD, PASSWORD_ENV, VALID_TOML


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_version_prints_the_package_version_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])

    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("replbot ")
    assert out.split()[1][0].isdigit()


def test_a_typo_is_a_usage_error_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check-config", "--confg", "x.toml"])

    assert caught.value.code == EXIT_USAGE == 2
    assert "unrecognized arguments: --confg" in capsys.readouterr().err


def test_config_defaults_to_etc_replbot_and_follows_replbot_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv("REPLBOT_TELEGRAM_TOKEN", raising=False)
    monkeypatch.delenv("REPLBOT_CONFIG", raising=False)
    assert Path("/etc/replbot/config.toml") == DEFAULT_CONFIG_PATH
    assert cli._parser().parse_args(["check-config"]).config == DEFAULT_CONFIG_PATH

    path = tmp_path / "from-env.toml"
    path.write_text(VALID_TOML)
    monkeypatch.setenv("REPLBOT_CONFIG", str(path))
    code = main(["check-config"])

    assert code == 0
    assert capsys.readouterr().out.startswith("config ok")


def test_a_missing_config_file_is_a_config_error_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLBOT_CONFIG", str(tmp_path / "absent.toml"))

    code = main(["check-config"])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ")
    assert "absent.toml" in err


def test_check_config_prints_the_effective_monitor_rebuild_and_metrics_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv("REPLBOT_TELEGRAM_TOKEN", raising=False)
    path = tmp_path / "good.toml"
    path.write_text(
        VALID_TOML
        + '\n[metrics]\nlisten = "127.0.0.1:9187"\n'
        + '\n[health]\nlisten = "127.0.0.1:9188"\n'
    )

    code = main(["check-config", "--config", str(path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "monitor: enabled; interval 5s; timeout 3s" in out
    assert "thresholds: node down after 2 polls; byte lag 50.0 MB/100.0 MB for 60s" in out
    assert "rebuild: second approver not required; verify timeout 120s" in out
    assert "metrics: http://127.0.0.1:9187/metrics and /healthz" in out
    assert "health: http://127.0.0.1:9188/healthz" in out
    assert "retention: sent alert messages and resolved alerts kept 90 days" in out
    assert "token ***" in out
    assert FILE_TOKEN not in out and PASSWORD not in out


def test_json_logs_are_one_object_per_line_with_secrets_masked(restore_root_logger: None) -> None:
    secret = "json-log-secret-Qw3rty"
    stream = io.StringIO()
    configure_logging(Redactor([secret]), logging.DEBUG, "json", stream=stream)
    logger = logging.getLogger("replbot.test")

    logger.debug("connecting with password=%s", "plain-pw-1234")
    try:
        raise RuntimeError(f"server said {secret}")
    except RuntimeError:
        logger.exception("probe of %s failed", "main/pg1")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "DEBUG"
    assert first["logger"] == "replbot.test"
    assert first["message"] == "connecting with password=***"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["message"] == "probe of main/pg1 failed"
    assert second["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: server said ***" in second["exception"]
    assert secret not in stream.getvalue()
    assert "plain-pw-1234" not in stream.getvalue()


def test_log_level_option_is_accepted_before_or_after_the_command() -> None:
    parser = cli._parser()

    before = parser.parse_args(["--log-level", "debug", "--log-format", "json", "check-config"])
    after = parser.parse_args(["check-config", "--log-level", "warning"])

    assert (before.log_level, before.log_format) == ("debug", "json")
    assert (after.log_level, after.log_format) == ("warning", "text")


def test_config_option_is_accepted_before_or_after_the_command(tmp_path: Path) -> None:
    """``replbot --config X check-config`` (as Patroni and postgres_exporter users type it)
    and ``replbot check-config --config X`` name the same file; the latter wins if both."""
    parser = cli._parser()
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"

    before = parser.parse_args(["--config", str(first), "check-config"])
    after = parser.parse_args(["run", "--config", str(second)])
    both = parser.parse_args(["--config", str(first), "check-config", "--config", str(second)])

    assert (before.config, after.config, both.config) == (first, second, second)


def test_audit_commands_take_config_before_the_command_too(tmp_path: Path) -> None:
    parser = cli._parser()
    path = tmp_path / "c.toml"

    for command in (["audit", "verify"], ["audit", "export"]):
        assert parser.parse_args(["--config", str(path), *command]).config == path
        assert parser.parse_args([*command, "--config", str(path)]).config == path
