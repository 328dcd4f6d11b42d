"""The whole command list in one place: every feature module's commands and actions."""

from __future__ import annotations

from handlers import admin, alerts, graph, rebuild, repair, replication, slotless
from handlers.base import ActionSpec, CommandSpec, HandlerGroup

GROUPS: tuple[HandlerGroup, ...] = (
    replication.group,
    graph.group,
    rebuild.group,
    repair.group,
    slotless.group,
    alerts.group,
    admin.group,
)

COMMANDS: dict[str, CommandSpec] = {spec.name: spec for group in GROUPS for spec in group.commands}
ACTIONS: dict[str, ActionSpec] = {spec.name: spec for group in GROUPS for spec in group.actions}
