"""postgresql.auto.conf edits that keep every other line as it is, and their undo."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from bot.config import NodeConfig
from bot.services.plans.model import RemoteCommand
from bot.services.rebuild.plan import q

_LINE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?")


def conf_literal(value: str) -> str:
    """A configuration-file / ALTER SYSTEM string literal (quotes doubled)."""
    if "\x00" in value or "\n" in value:
        raise ValueError("a setting value may not contain NUL or a line break")
    return "'" + value.replace("'", "''") + "'"


def set_lines(original: str, values: dict[str, str]) -> str:
    """``original`` with each named setting set to its (already quoted) value.

    The first line of a named setting is replaced in place, later lines of the same setting
    are dropped (the server would use the last one), every other line stays byte for byte;
    settings not present are appended.
    """
    lines = original.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    written: set[str] = set()
    out: list[str] = []
    for line in lines:
        match = _LINE_RE.match(line)
        name = match.group(1).lower() if match else None
        if name in values:
            if name not in written:
                out.append(f"{name} = {values[name]}")
                written.add(name)
            continue
        out.append(line)
    out.extend(f"{name} = {value}" for name, value in values.items() if name not in written)
    return "\n".join(out) + "\n"


def backup_path(path: str, tag: str) -> str:
    """Where the original of ``path`` is kept."""
    return f"{path}.replbot-{tag}"


def keep_copy(path: str, backup: str) -> RemoteCommand:
    """Copy ``path`` to ``backup`` (refused when the backup exists: nothing overwritten)."""
    return RemoteCommand(
        f"if [ -e {q(backup)} ]; then echo {q(backup + ' exists')} >&2; exit 1; fi; "
        f"cp -p -- {q(path)} {q(backup)}"
    )


def restore_copy(path: str, backup: str, then: str = "") -> RemoteCommand:
    """Put the kept original back (``cp -p``; the copy stays), then run ``then``."""
    command = f"cp -p -- {q(backup)} {q(path)}"
    return RemoteCommand(f"{command} && {{ {then}; }}" if then else command)


def pg_ctl(node: NodeConfig, verb: str) -> str:
    """``pg_ctl VERB -D data_dir`` (reload)."""
    assert node.pg_bin_dir is not None and node.data_dir is not None
    binary = PurePosixPath(node.pg_bin_dir) / "pg_ctl"
    return f"{q(binary)} {verb} -D {q(node.data_dir)}"
