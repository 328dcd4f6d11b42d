"""Wording of the charts (/graph and the charts on alerts): caption, title, axis labels.

Pure functions; times are UTC, like the rest of the bot's replies. (Not yet translated: the
labels and captions are English in every language.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.models import ChartLabels, ChartRef, ChartSummary
from handlers.render.common import esc, human_bytes, human_duration

CHART_ICON = "📈"
CAPTION_LIMIT = 1024  # Telegram's limit for a photo's caption


def window_name(window_s: float) -> str:
    """21600 -> '6 h', 604800 -> '7 d'."""
    if window_s >= 86400 and window_s % 86400 == 0:
        return f"{window_s / 86400:.0f} d"
    return f"{window_s / 3600:g} h"


def subject(ref: ChartRef) -> str:
    """'main' or 'main/pg2' (plain text)."""
    return ref.cluster if ref.node is None else f"{ref.cluster}/{ref.node}"


def labels(ref: ChartRef) -> ChartLabels:
    """The words drawn on the chart of ``ref``."""
    return ChartLabels(
        title=f"{subject(ref)}: replication, last {window_name(ref.window_s)} (UTC)",
        lag_bytes_axis="replay lag, MB",
        lag_seconds_axis="replay lag, s",
        retained_axis="slot WAL retained, MB",
        time_axis="time (UTC)",
        warning="warning",
        critical="critical",
        outage="not streaming",
        no_data="no history yet: the monitor records every poll",
    )


def _clock(at: float, window_s: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%H:%M" if window_s <= 86400 else "%d %b %H:%M")


def _size(value: int | None) -> str:
    return "0" if value == 0 else human_bytes(value)


def caption(summary: ChartSummary) -> str:
    """One line, outcome first: 'main/pg2: lag peaked at 84.0 MB at 03:12, now 0'."""
    ref = summary.ref
    window = window_name(ref.window_s)
    if summary.samples == 0:
        text = f"{CHART_ICON} {esc(subject(ref))}: no history in the last {window} yet"
        return text[:CAPTION_LIMIT]
    if summary.replica is None or summary.peak_bytes is None or summary.peak_at is None:
        text = f"{CHART_ICON} {esc(subject(ref))}: no replica lag recorded in the last {window}"
    else:
        who = summary.replica if ref.node is not None else f"{ref.cluster}/{summary.replica}"
        if summary.streaming_now is False:
            now = "not streaming now"
        else:
            now = f"now {_size(summary.now_bytes)}"
        text = (
            f"{CHART_ICON} <b>{esc(who)}</b>: lag peaked at {_size(summary.peak_bytes)} "
            f"at {_clock(summary.peak_at, ref.window_s)}, {now}"
        )
    if summary.outage_s > 0:
        text += f"; not streaming for {human_duration(summary.outage_s)} in {window}"
    return text[:CAPTION_LIMIT]


def alert_chart_caption(summary: ChartSummary) -> str:
    """The caption of the small chart under an alert (the same line as /graph's)."""
    return caption(summary)
