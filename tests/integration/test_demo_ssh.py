"""``replbot demo --ssh``: the demo's rebuild goes through a real loopback sshd (key login,
host key pinned), the production path, and nothing is left running afterwards."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.integration._helpers import pids_with_cmdline
from tests.integration.test_cli import run_replbot

pytestmark = pytest.mark.integration


def test_demo_over_ssh_rebuilds_its_replica_through_the_loopback_sshd() -> None:
    result = run_replbot(
        "demo", "--ssh", "--keep", "--exec", "/rebuild pg2", "--exec", "1", "--exec", "/status",
        timeout=240,
    )  # fmt: skip
    out = result.stdout
    base_match = re.search(r" in (/tmp/rbdemo-\S+) …$", out, re.M)
    assert base_match, out + result.stderr
    base = Path(base_match.group(1))
    try:
        assert result.returncode == 0, out + result.stderr
        ssh = re.search(
            r"^/rebuild runs over SSH: (\w+)@127\.0\.0\.1:(\d+), key (\S+), "
            r"host key pinned in (\S+)$",
            out,
            re.M,
        )
        assert ssh, out
        assert re.search(r"^✅ rebuilt demo/pg2 \(job 1, ", out, re.M), out
        assert re.search(r"^✅ demo: 1/1 replicas streaming$", out, re.M), out
        sshd_log = (base / "sshd" / "sshd.log").read_text()
        # the preflight and every step of the rebuild logged in with the demo's key
        logins = re.findall(rf"Accepted publickey for {ssh.group(1)} from 127\.0\.0\.1", sshd_log)
        assert len(logins) >= 2, sshd_log
        assert Path(ssh.group(4)).read_text().startswith(f"[127.0.0.1]:{ssh.group(2)} ")
        assert pids_with_cmdline(str(base)) == []  # servers and sshd stopped (--keep: files stay)
    finally:
        shutil.rmtree(base, ignore_errors=True)
