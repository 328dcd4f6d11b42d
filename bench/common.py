"""Shared pieces of the benchmarks: statistics, result tables, the loopback test bed."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    metric: str
    value: float
    unit: str
    goal: str = ""
    met: bool | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[index])


def spread(values: Sequence[float]) -> str:
    """min–max as text."""
    return f"{min(values):.3g}–{max(values):.3g}" if values else ""


def short_tmpdir(prefix: str = "rbb") -> Path:
    """A short /tmp directory the postgres OS user can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    return path


def machine() -> str:
    """One line describing the machine the numbers come from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
        f"{memory:.0f} GiB, Python {platform.python_version()}"
    )


def write_results(
    rows: list[Row], name: str, extra: dict[str, Any] | None = None, footer: str = ""
) -> Path:
    """Write results/NAME.json and results/NAME.md (``footer``: a last line); return the
    Markdown path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    payload = {"when": stamp, "machine": machine(), "rows": [asdict(r) for r in rows]}
    if extra:
        payload.update(extra)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2))
    lines = [
        f"Measured {stamp} on {machine()}.",
        "",
        "| benchmark | metric | value | goal | met | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(
            f"| {r.benchmark} | {r.metric} | {r.value:.4g} {r.unit} | {r.goal} | {met} | {r.note} |"
        )
    if footer:
        lines += ["", footer]
    path = RESULTS_DIR / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def rss_kb(pid: int) -> int:
    """Resident set size of a process in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_as_server_user(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command as the postgres OS user when root (the servers' owner)."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
