"""contrib/replbot.service: a hardened unit that runs what the CLI accepts, with a writable
state directory for the store and the secrets in an EnvironmentFile."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

from bot import cli

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "replbot.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section], Key=Value, '#'/';' comments, keys may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {number}: a key before any [Section]"
        key, sep, value = line.partition("=")
        assert sep and key.strip().isidentifier(), f"line {number}: not Key=Value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{section}.{key} set {len(values)} times"
    return values[0]


def test_the_unit_runs_the_bot_as_its_own_user_and_restarts_only_when_that_can_help() -> None:
    unit = parse_unit(UNIT.read_text())

    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "User") == "replbot"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert set(one(unit, "Service", "RestartPreventExitStatus").split()) == {
        str(cli.EXIT_USAGE),
        str(cli.EXIT_AUDIT_FAILED),
    }
    assert one(unit, "Service", "EnvironmentFile").lstrip("-") == "/etc/replbot/replbot.env"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(unit, "Unit", "After")

    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert argv[0].startswith("/") and argv[0].endswith("/replbot")
    args = cli._parser().parse_args(argv[1:])  # the CLI accepts exactly this command line
    assert args.command == "run"
    assert args.config == cli.DEFAULT_CONFIG_PATH
    assert args.log_format == "json"


def test_the_unit_is_hardened_and_can_write_only_the_store() -> None:
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]

    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "PrivateTmp") == "yes"
    assert one(unit, "Service", "ProtectHome") == "yes"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    writable = [Path(p.lstrip("-")) for v in service["ReadWritePaths"] for p in v.split()]
    assert writable == [Path("/var/lib/replbot")]
    assert one(unit, "Service", "StateDirectory") == "replbot"
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    audit_path = Path(example["audit"]["path"])
    assert audit_path.parent in writable  # the store (and its -wal, key file) can be written


def test_the_env_file_example_names_only_replbot_variables() -> None:
    lines = (ROOT / "contrib" / "replbot.env.example").read_text().splitlines()
    names = [line.lstrip("#").split("=", 1)[0] for line in lines if "=" in line and "REPL" in line]
    assert "REPLBOT_TELEGRAM_TOKEN" in names and "REPLBOT_AUDIT_KEY" in names
    assert all(name.startswith("REPLBOT_") for name in names)


def test_systemd_analyze_verify_finds_nothing_wrong_where_systemd_is_installed(
    tmp_path: Path,
) -> None:
    """Where systemd-analyze exists it must accept the unit without a single warning (it only
    warns about unknown keys, so stderr must be empty); ExecStart points at an executable
    that exists here, as verify checks that. Elsewhere the structural checks above stand."""
    analyze = shutil.which("systemd-analyze")
    text = UNIT.read_text()
    argv0 = shlex.split(one(parse_unit(text), "Service", "ExecStart"))[0]
    if analyze is None:
        assert argv0 == "/usr/local/bin/replbot"  # the structural check is what remains
        return
    copy = tmp_path / "replbot.service"
    copy.write_text(text.replace(argv0, shutil.which("true") or "/bin/true"))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
