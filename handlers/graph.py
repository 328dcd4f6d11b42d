"""/graph: the monitor's history of a cluster or replica as a chart (sendPhoto)."""

from __future__ import annotations

from bot.errors import InvalidInput
from bot.models import Role
from bot.phrases import Phrase
from bot.services.charts import DEFAULT_WINDOW, WINDOWS
from handlers import parsing
from handlers.base import CommandContext, HandlerGroup
from handlers.render import graph as render_graph

group = HandlerGroup()
USAGE = "/graph [cluster|node] [6h|24h|7d]"


def graph_args(args: list[str]) -> tuple[str | None, str | None, str]:
    """``[cluster|node] [cluster] [window]`` -> (name, cluster, window)."""
    windows = [a for a in args if a.lower() in WINDOWS]
    words = [a for a in args if a.lower() not in WINDOWS]
    if len(windows) > 1 or len(words) > 2:
        raise InvalidInput(Phrase.of("error.usage", usage=USAGE))
    names = [parsing.cluster_name(w) for w in words]  # node names follow the same rule
    name = names[0] if names else None
    cluster = names[1] if len(names) == 2 else None
    return name, cluster, windows[0].lower() if windows else DEFAULT_WINDOW


@group.command("graph", Role.VIEWER, "chart of replica lag and slot WAL", USAGE)
async def graph(ctx: CommandContext) -> None:
    """Draw the lag and retained-WAL chart of a cluster (or one replica) and send it."""
    name, cluster, window = graph_args(ctx.args)
    charts = ctx.services.charts
    if charts is None:
        raise InvalidInput(Phrase.of("error.chart.off"))
    ref = charts.target(name, cluster, window)
    png, summary = await charts.draw(ref, render_graph.labels(ref))
    ctx.audit_note = f"{render_graph.subject(ref)} {window}, {summary.samples} point(s)"
    await ctx.chat.send_photo(png, render_graph.caption(summary))
