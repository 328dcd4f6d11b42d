"""A plan's file edit, run by a real shell: original kept once, content replaced atomically."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.services.plans.executor import file_edit_command
from bot.services.plans.model import FileEdit


def _run(edit: FileEdit) -> None:
    subprocess.run(["bash", "-c", file_edit_command(edit)], check=True)


def test_the_original_is_kept_once_and_the_content_replaced(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.auto.conf"
    conf.write_text("max_worker_processes = '4'\n")
    conf.chmod(0o600)
    backup = tmp_path / "postgresql.auto.conf.replbot-orig"
    content = "max_worker_processes = '6'\nprimary_conninfo = 'host=x user=''o''neil'''\n"
    _run(FileEdit(str(conf), content, str(backup)))
    assert conf.read_text() == content
    assert backup.read_text() == "max_worker_processes = '4'\n"
    assert conf.stat().st_mode & 0o777 == 0o600
    _run(FileEdit(str(conf), "x = 1\n", str(backup)))
    assert backup.read_text() == "max_worker_processes = '4'\n"  # never overwritten
    assert conf.read_text() == "x = 1\n"


def test_a_missing_file_is_created_without_a_backup(tmp_path: Path) -> None:
    signal = tmp_path / "standby.signal"
    _run(FileEdit(str(signal), "", str(tmp_path / "standby.signal.replbot-orig")))
    assert signal.exists() and signal.read_text() == ""
    assert not (tmp_path / "standby.signal.replbot-orig").exists()
