"""The resume path: the data is a consistent standby whose WAL is still on the primary.

Fix what keeps it from streaming — a missing slot (only when its WAL is still there), a
missing or wrong ``primary_conninfo`` / ``primary_slot_name`` (``ALTER SYSTEM`` when the
replica runs, after keeping a copy of ``postgresql.auto.conf``; else an edit of that file
that keeps the original), a missing ``standby.signal`` — start it, and wait until both sides
see it stream. Moves no data files.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from bot.config import ClusterConfig, NodeConfig, RebuildConfig
from bot.phrases import Phrase
from bot.services.plans.model import (
    FileEdit,
    Plan,
    Probe,
    RemoteCommand,
    Sql,
    SqlTarget,
    Step,
    Wait,
)
from bot.services.rebuild.plan import q
from bot.services.repair.autoconf import (
    backup_path,
    conf_literal,
    keep_copy,
    pg_ctl,
    restore_copy,
    set_lines,
)
from bot.services.repair.models import Diagnosis


def stream_name(diag: Diagnosis, node: NodeConfig) -> str:
    """The application_name the replica streams under after the repair."""
    return node.application_name or diag.conninfo.application_name or node.name


def standby_values(diag: Diagnosis, node: NodeConfig) -> dict[str, str]:
    """The (quoted) primary_conninfo / primary_slot_name to write; empty when both are right."""
    assert node.replication is not None and node.slot is not None
    values: dict[str, str] = {}
    if not diag.conninfo_ok:
        conninfo = node.replication.conninfo(application_name=stream_name(diag, node))
        values["primary_conninfo"] = conf_literal(conninfo)
    if not diag.slot_name_ok:
        values["primary_slot_name"] = conf_literal(node.slot)
    return values


def streaming_wait(diag: Diagnosis, node: NodeConfig, settings: RebuildConfig) -> Step:
    """Wait until the replica streams through its slot under its name (both sides)."""
    assert node.slot is not None
    return Step(
        "verify",
        Phrase.of("step.wait_streaming", node=node.name),
        Wait(
            Probe.STREAMING,
            settings.verify_timeout_s,
            args=(node.slot, stream_name(diag, node)),
        ),
    )


def build_resume(
    diag: Diagnosis, cluster: ClusterConfig, node: NodeConfig, settings: RebuildConfig, tag: str
) -> Plan:
    """The resume plan for ``node`` (call only when the resume path was chosen)."""
    assert node.slot and node.data_dir and node.start_command and node.stop_command
    steps: list[Step] = []
    keeps: list[str] = []
    running = diag.replica_up
    if not diag.slot_exists:
        steps.append(
            Step(
                "create_slot",
                Phrase.of("step.create_slot", slot=node.slot, primary=cluster.primary.name),
                Sql(
                    SqlTarget.PRIMARY,
                    "SELECT pg_catalog.pg_create_physical_replication_slot(%s, true)",
                    (node.slot,),
                ),
                Sql(
                    SqlTarget.PRIMARY,
                    "SELECT pg_catalog.pg_drop_replication_slot(%s)",
                    (node.slot,),
                ),
            )
        )
    values = standby_values(diag, node)
    path = diag.auto_conf_path
    backup = backup_path(path, tag)
    if values and running:
        keeps.append(backup)
        steps.append(
            Step(
                "keep_auto_conf",
                Phrase.of("step.keep_auto_conf", file=PurePosixPath(backup).name),
                keep_copy(path, backup),
                restore_copy(path, backup, pg_ctl(node, "reload")),
            )
        )
        for name, value in values.items():
            steps.append(
                Step(
                    f"set_{name}",
                    Phrase.of("step.set_setting", name=name, node=node.name),
                    Sql(SqlTarget.REPLICA, f"ALTER SYSTEM SET {name} = {value}"),
                )
            )
        steps.append(
            Step(
                "reload",
                Phrase.of("step.reload", node=node.name),
                Sql(SqlTarget.REPLICA, "SELECT pg_catalog.pg_reload_conf()"),
            )
        )
    elif values:
        assert diag.auto_conf is not None
        keeps.append(backup)
        steps.append(
            Step(
                "edit_auto_conf",
                Phrase.of("step.edit_auto_conf", settings=", ".join(values)),
                FileEdit(path, set_lines(diag.auto_conf, values), backup),
                restore_copy(path, backup),
            )
        )
    if not diag.standby_signal:
        signal = q(PurePosixPath(node.data_dir) / "standby.signal")
        steps.append(
            Step(
                "standby_signal",
                Phrase.of("step.standby_signal"),
                RemoteCommand(f"if [ ! -e {signal} ]; then : > {signal}; fi"),
            )
        )
    if not diag.server_running:
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
        kind="repair.resume",
        cluster=cluster.name,
        node=node.name,
        host=node.ssh.host if node.ssh else "localhost",
        steps=tuple(steps),
        keeps=tuple(keeps),
        facts=_facts(diag),
    )


def _facts(diag: Diagnosis) -> tuple[tuple[str, str], ...]:
    """What the approval depends on beyond the steps."""
    return (
        ("primary_timeline", str(diag.primary_timeline)),
        ("replica_up", str(diag.replica_up)),
        ("server_running", str(diag.server_running)),
    )
