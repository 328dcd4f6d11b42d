"""config.example.toml lists every key bot/config.py accepts (set or commented out), and is
itself a valid config; LICENSE matches pyproject's license."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot import config as config_module
from bot.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
ENV = {"REPLBOT_PG1_PASSWORD": "pw-one-1234", "REPLBOT_PG2_PASSWORD": "pw-two-1234"}


def accepted_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Table -> the key names config.py allows there, recorded from its own validation
    while it parses the example (so a key added to config.py is seen here at once)."""
    seen: dict[str, set[str]] = {}
    real = config_module._only_keys

    def spy(key: str, table: Any, allowed: set[str]) -> None:
        generic = re.sub(
            r"^clusters\.[^.]+(\.nodes\.[^.]+)?",
            lambda m: "clusters.nodes" if m.group(1) else "clusters",
            key,
        )
        seen.setdefault(generic, set()).update(allowed)
        real(key, table, allowed)

    monkeypatch.setattr(config_module, "_only_keys", spy)
    parse_config(tomllib.loads(EXAMPLE.read_text()), ENV)
    return seen


def mentioned_keys(text: str) -> set[str]:
    """Every ``name =`` in the example, also in comments and inline tables, and [tables]."""
    names = set(re.findall(r"(?:^|[\s{,#])([a-z_]+)\s*=", text, re.M))
    names |= {
        part
        for header in re.findall(r"^\[+([a-z_.]+)\]+", text, re.M)
        for part in header.split(".")
    }
    return names


def test_every_key_config_py_accepts_appears_in_the_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted = accepted_keys(monkeypatch)
    mentioned = mentioned_keys(EXAMPLE.read_text())

    # the tables config.py checks keys of: the top level, [telegram] … [[clusters.nodes]], ssh …
    assert {"", "telegram", "audit", "monitor", "rebuild", "metrics", "clusters.nodes"} <= set(
        accepted
    )
    missing = {
        f"{table or '<top>'}.{name}"
        for table, names in accepted.items()
        for name in names
        if name not in mentioned
    }
    assert missing == set(), f"add to config.example.toml: {sorted(missing)}"


def test_the_example_is_a_valid_config() -> None:
    config = parse_config(tomllib.loads(EXAMPLE.read_text()), ENV)
    assert config.cluster("main") is not None


def test_the_license_file_is_mit_as_pyproject_says() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == {"text": "MIT"}
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} replbot authors$", text, re.M)
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


# Keys whose README row the lead adds when merging (this branch may not edit README.md; the
# row text is in the ops report). Remove an entry once README has its row (a test says so).
PENDING_README_ROWS = {"health.listen", "telegram.language", "users[].language"}


def readme_config_rows() -> list[str]:
    """The first cell of every row of README's "Configuration reference" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]


def test_every_key_config_py_accepts_is_in_readmes_configuration_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys of [monitor] and [clusters.monitor] are covered by their ``monitor.*`` row; the
    fields of the ssh and replication inline tables are listed in their own row's text."""
    rows = readme_config_rows()
    words = [set(re.findall(r"[a-z_]+(?:\.[a-z_*]+)*", row)) for row in rows]
    missing = []
    for table, names in accepted_keys(monkeypatch).items():
        if table in {"", "clusters", "clusters.nodes.ssh", "clusters.nodes.replication"}:
            continue
        if table.startswith("users"):  # users[N]: the "users[].id / name / role" row
            names = {n for n in names if not any("users[]" in r and n in r for r in rows)}
            missing.extend(f"users[].{n}" for n in names)
            continue
        if table in {"monitor", "clusters.monitor"}:
            wildcard = "monitor.*" if table == "monitor" else "clusters[].monitor.*"
            if not any(wildcard in row for row in rows):
                missing.append(wildcard)
            continue
        for name in names:
            if table == "clusters.nodes":
                found = any(
                    "nodes[]" in row and name in w for row, w in zip(rows, words, strict=True)
                )
            else:
                found = any(f"{table}.{name}" in w for w in words)
            if not found:
                missing.append(f"{table}.{name}")
    unexpected = sorted(set(missing) - PENDING_README_ROWS)
    assert unexpected == [], f"add README.md configuration rows for: {unexpected}"
    documented = sorted(PENDING_README_ROWS - set(missing))
    assert documented == [], f"README has these rows now; drop them from PENDING: {documented}"
