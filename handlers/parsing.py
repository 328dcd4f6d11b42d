"""Argument parsing for chat commands: text in, validated values out, InvalidInput otherwise.

Parsers run before any service call, so invalid input never reaches SQL or SSH.
"""

from __future__ import annotations

import re

from bot.errors import InvalidInput
from bot.phrases import Phrase
from bot.services.replication import validate_slot_name

MAX_ARGS_TEXT = 1000
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?$")
_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def split_command(text: str) -> tuple[str, list[str]]:
    """'/status@replbot main' -> ('status', ['main']); InvalidInput when not a command."""
    if len(text) > MAX_ARGS_TEXT:
        raise InvalidInput(Phrase.of("error.input.too_long", limit=MAX_ARGS_TEXT))
    words = text.split()
    if not words:
        raise InvalidInput(Phrase.of("error.input.empty"))
    match = _COMMAND.match(words[0])
    if match is None:
        raise InvalidInput(Phrase.of("error.input.not_command"))
    return match.group(1).lower(), words[1:]


def addressed_bot(text: str) -> str | None:
    """'/status@other_bot main' -> 'other_bot'; None without a (well-formed) @mention."""
    words = text.split(maxsplit=1)
    match = _COMMAND.match(words[0]) if words else None
    return match.group(2) if match is not None else None


def optional_cluster(args: list[str]) -> str | None:
    """``[cluster]``: at most one argument, a valid cluster name."""
    if len(args) > 1:
        raise InvalidInput(Phrase.of("error.input.too_many"))
    return cluster_name(args[0]) if args else None


def cluster_name(text: str) -> str:
    """A syntactically valid cluster name (whether it exists is the service's business)."""
    if not _CLUSTER.match(text):
        raise InvalidInput(Phrase.of("error.input.cluster_name"))
    return text


def slot_and_cluster(args: list[str], usage: str) -> tuple[str, str | None]:
    """``NAME [cluster]`` for the slot commands."""
    if not args or len(args) > 2:
        raise InvalidInput(Phrase.of("error.usage", usage=usage))
    slot = validate_slot_name(args[0])
    return slot, cluster_name(args[1]) if len(args) == 2 else None


def audit_limit(args: list[str], default: int = 20, maximum: int = 200) -> int:
    """``[N]`` for /audit: 1..maximum."""
    if not args:
        return default
    if len(args) > 1 or not args[0].isdecimal() or not 1 <= int(args[0]) <= maximum:
        raise InvalidInput(Phrase.of("error.input.audit_usage", maximum=maximum))
    return int(args[0])


def no_arguments(args: list[str]) -> None:
    """Commands that take nothing."""
    if args:
        raise InvalidInput(Phrase.of("error.input.no_args"))


REBUILD_MODES = ("--dry-run", "--cancel", "--rollback", "--abandon", "--cleanup")
REBUILD_USAGE = (
    "/rebuild NODE [cluster] [--dry-run | --cancel | --rollback | --abandon | --cleanup]"
)
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def rebuild_args(args: list[str]) -> tuple[str, str | None, str]:
    """``NODE [cluster] [--mode]`` -> (node, cluster or None, mode; "run" by default)."""
    modes = [a for a in args if a.startswith("--")]
    words = [a for a in args if not a.startswith("--")]
    if len(modes) > 1 or any(m not in REBUILD_MODES for m in modes):
        raise InvalidInput(Phrase.of("error.usage", usage=REBUILD_USAGE))
    if not words or len(words) > 2:
        raise InvalidInput(Phrase.of("error.usage", usage=REBUILD_USAGE))
    if not _NODE.match(words[0]):
        raise InvalidInput(Phrase.of("error.input.node_name"))
    cluster = cluster_name(words[1]) if len(words) == 2 else None
    return words[0], cluster, modes[0].removeprefix("--") if modes else "run"
