"""/graph: the monitor's history of a cluster or replica as a chart (sendPhoto)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.config import AppConfig
from bot.errors import InvalidInput
from bot.models import ChartRef, Role
from bot.phrases import Phrase
from bot.ports import PhotoNotifier
from bot.services.charts import DEFAULT_WINDOW, WINDOWS, ChartService
from handlers import i18n, parsing
from handlers.base import CommandContext, HandlerGroup, Purpose
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


@group.command(
    "graph",
    Role.VIEWER,
    "chart of replica lag and slot WAL",
    USAGE,
    purpose=Purpose.WATCH,
    example="/graph pg2 24h",
)
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


AttachChart = Callable[[int, int | None, ChartRef, int], Awaitable[None]]


def alert_language(config: AppConfig, cluster: str) -> str:
    """The language of ``cluster``'s alerts: the cluster's own, else ``telegram.language``."""
    own = next((c.language for c in config.clusters if c.name == cluster), None)
    return own or config.telegram.language


def alert_chart_sender(
    config: AppConfig, charts: ChartService, photos: PhotoNotifier
) -> AttachChart:
    """What sends the small chart under an alert: labels and caption in the language of the
    alert's cluster (rendered here, on the event loop, before the drawing thread starts)."""

    async def send(chat: int, thread: int | None, ref: ChartRef, reply_to: int) -> None:
        with i18n.language(alert_language(config, ref.cluster)):
            png, summary = await charts.draw(ref, render_graph.labels(ref), small=True)
            caption = render_graph.alert_chart_caption(summary)
        await photos.send_photo(chat, thread, png, caption, reply_to)

    return send
