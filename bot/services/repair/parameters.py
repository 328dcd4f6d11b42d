"""The parameters path: a hot-standby setting is lower than the primary's.

Set the primary's value on the replica — an edit of ``postgresql.auto.conf`` that keeps the
original when the replica is down (the exact lines are shown), ``ALTER SYSTEM`` after
keeping a copy of that file when it runs — stop it, start it and wait until it streams.
A failed start undoes the stop: the original file back, then the old server started.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from bot.config import ClusterConfig, NodeConfig, RebuildConfig
from bot.phrases import Phrase
from bot.services.plans.model import FileEdit, Plan, RemoteCommand, Sql, SqlTarget, Step
from bot.services.repair.autoconf import (
    backup_path,
    keep_copy,
    restore_copy,
    set_lines,
)
from bot.services.repair.models import Diagnosis
from bot.services.repair.resume import _facts, standby_values, streaming_wait


def target_values(diag: Diagnosis) -> dict[str, int]:
    """Setting -> the value to give the replica: the primary's (or the one the log named)."""
    values: dict[str, int] = {}
    for check in diag.low_settings:
        assert check.primary is not None
        values[check.name] = check.primary
    for refusal in diag.refusals:
        values[refusal.name] = max(values.get(refusal.name, 0), refusal.primary_value)
    return values


def _stop_then_start(node: NodeConfig, path: str, backup: str) -> list[Step]:
    """The restart as two steps: a failed start undoes the stop — the original file back,
    then the server started with it (a failing step's own undo never runs)."""
    assert node.start_command and node.stop_command
    return [
        Step(
            "stop",
            Phrase.of("step.stop", node=node.name),
            RemoteCommand(node.stop_command),
            restore_copy(path, backup, node.start_command),
        ),
        Step(
            "start",
            Phrase.of("step.start_new_setting", node=node.name),
            RemoteCommand(node.start_command),
            RemoteCommand(node.stop_command),
        ),
    ]


def build_parameters(
    diag: Diagnosis, cluster: ClusterConfig, node: NodeConfig, settings: RebuildConfig, tag: str
) -> Plan:
    """The parameters plan for ``node`` (call only when that path was chosen)."""
    assert node.start_command and node.stop_command
    values = target_values(diag)
    path = diag.auto_conf_path
    backup = backup_path(path, tag)
    steps: list[Step] = []
    if diag.replica_up:
        steps.append(
            Step(
                "keep_auto_conf",
                Phrase.of("step.keep_auto_conf", file=PurePosixPath(backup).name),
                keep_copy(path, backup),
                restore_copy(path, backup),
            )
        )
        for name, value in values.items():
            steps.append(
                Step(
                    f"set_{name}",
                    Phrase.of("step.set_value", name=name, value=int(value), node=node.name),
                    Sql(SqlTarget.REPLICA, f"ALTER SYSTEM SET {name} = {int(value)}"),
                )
            )
        steps += _stop_then_start(node, path, backup)
    else:
        assert diag.auto_conf is not None
        lines = {name: str(int(value)) for name, value in values.items()}
        # a standby configuration that is also wrong is mended in the same edit
        lines.update(standby_values(diag, node))
        steps.append(
            Step(
                "edit_auto_conf",
                Phrase.of(
                    "step.edit_auto_conf",
                    settings=", ".join(f"{n} = {v}" for n, v in values.items()),
                ),
                FileEdit(path, set_lines(diag.auto_conf, lines), backup),
                restore_copy(path, backup),
            )
        )
        if diag.server_running:
            steps += _stop_then_start(node, path, backup)
        else:
            steps.append(
                Step(
                    "start",
                    Phrase.of("step.start", node=node.name),
                    RemoteCommand(node.start_command),
                    RemoteCommand(node.stop_command),
                )
            )
    steps.append(streaming_wait(diag, node, settings))
    return Plan(
        kind="repair.parameters",
        cluster=cluster.name,
        node=node.name,
        host=node.ssh.host if node.ssh else "localhost",
        steps=tuple(steps),
        keeps=(backup,),
        facts=_facts(diag),
    )
