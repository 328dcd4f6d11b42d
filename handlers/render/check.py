"""/check wording."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import (
    CheckLevel,
    ClusterCheck,
)
from handlers.i18n import _
from handlers.render.common import _LEVEL_ICON, esc


def check(clusters: Sequence[ClusterCheck]) -> str:
    """The /check reply: one line per prerequisite with its fix."""
    blocks = []
    for cluster in clusters:
        counts = {level: sum(1 for i in cluster.items if i.level is level) for level in CheckLevel}
        lines = [
            f"{_LEVEL_ICON[cluster.worst]} <b>{esc(cluster.cluster)}</b> "
            + _("prerequisites: {ok} ok, {warn} warn, {fail} fail").format(
                ok=counts[CheckLevel.OK], warn=counts[CheckLevel.WARN], fail=counts[CheckLevel.FAIL]
            )
        ]
        for item in cluster.items:
            line = (
                f"{_LEVEL_ICON[item.level]} {esc(item.node)} · {esc(item.name)}: {esc(item.detail)}"
            )
            if item.fix and item.level is not CheckLevel.OK:
                line += f" → {esc(item.fix)}"
            lines.append(line)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
