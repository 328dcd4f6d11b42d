"""requirements.lock (pip-compile --generate-hashes of pyproject.toml) covers every runtime
dependency and extra at a version pyproject allows, each with hashes; the image installs it
with --require-hashes before the code is copied; unused extras stay dropped."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# What an extra of a dependency pulls in (the lock must hold these too).
EXTRA_PACKAGES = {
    ("python-telegram-bot", "rate-limiter"): "aiolimiter",
    ("psycopg", "binary"): "psycopg-binary",
}


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) from requirements.lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if pin:
            current = canonicalize_name(pin.group(1))
            entries[current] = (pin.group(2), [])
            continue
        digest = re.search(r"--hash=sha256:([0-9a-f]{64})", line)
        if digest and current is not None:
            entries[current][1].append(digest.group(1))
    return entries


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_the_lock_pins_every_dependency_of_pyproject_within_its_range_with_hashes() -> None:
    lock = locked()
    assert lock, "requirements.lock holds no pins"
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement} is not in requirements.lock (re-run pip-compile)"
        version, _ = lock[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} is outside {requirement.specifier} (re-run pip-compile)"
        )
        for extra in requirement.extras:
            pulled = EXTRA_PACKAGES.get((name, extra))
            assert pulled is not None, f"add what {name}[{extra}] installs to EXTRA_PACKAGES"
            assert canonicalize_name(pulled) in lock, f"{pulled} ({name}[{extra}]) not locked"
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no --hash (use pip-compile --generate-hashes)"


def test_the_unused_extras_are_not_installed() -> None:
    extras = {(r.name, e) for r in runtime_requirements() for e in r.extras}
    assert ("python-telegram-bot", "job-queue") not in extras
    assert ("psycopg", "pool") not in extras
    assert {"apscheduler", "psycopg-pool"}.isdisjoint(locked())


def test_the_image_installs_the_lock_with_hashes_before_copying_the_code() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]

    def first(test: str) -> int:
        return next(i for i, line in enumerate(lines) if test in line)

    lock_copy = lines.index("COPY requirements.lock ./")
    install = first("pip install --require-hashes --no-deps -r requirements.lock")
    code_copy = lines.index("COPY bot ./bot")
    package = first("RUN pip install --no-deps .")
    assert lock_copy < install < code_copy < package
    assert any(line.startswith("HEALTHCHECK") for line in lines)
