"""Wording of the charts (/graph and the charts on alerts): caption, title, axis labels.

Pure functions; times are UTC, like the rest of the bot's replies. Every word is rendered in
the current reply language (handlers.i18n) *before* the chart is drawn: the drawing runs in a
worker thread, which does not see the caller's language, so the renderer gets finished strings
(:class:`ChartLabels`), never msgids.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.models import ChartLabels, ChartRef, ChartSummary
from handlers.i18n import _, current_language
from handlers.render.common import esc, human_bytes, human_duration

CHART_ICON = "📈"
CAPTION_LIMIT = 1024  # Telegram's limit for a photo's caption
# How a day is written where the clock alone is not enough (windows over 24 h): English keeps
# the month's abbreviation, Russian the day.month numbers (strftime's %b would be English).
_DAY_FORMATS = {"en": "%d %b", "ru": "%d.%m"}


def _day_format() -> str:
    return _DAY_FORMATS.get(current_language(), _DAY_FORMATS["en"])


def window_name(window_s: float) -> str:
    """21600 -> '6 h', 604800 -> '7 d' (the units in the reply language)."""
    if window_s >= 86400 and window_s % 86400 == 0:
        return f"{window_s / 86400:.0f} {_('d')}"
    return f"{window_s / 3600:g} {_('h')}"


def subject(ref: ChartRef) -> str:
    """'main' or 'main/pg2' (plain text)."""
    return ref.cluster if ref.node is None else f"{ref.cluster}/{ref.node}"


def labels(ref: ChartRef) -> ChartLabels:
    """The words drawn on the chart of ``ref``, in the current reply language."""
    return ChartLabels(
        title=_("{subject}: replication, last {window} (UTC)").format(
            subject=subject(ref), window=window_name(ref.window_s)
        ),
        lag_bytes_axis=_("replay lag, MB"),
        lag_seconds_axis=_("replay lag, s"),
        retained_axis=_("slot WAL retained, MB"),
        time_axis=_("time (UTC)"),
        warning=_("warning"),
        critical=_("critical"),
        outage=_("not streaming"),
        no_data=_("no history yet: the monitor records every poll"),
        day_format=_day_format(),
    )


def _clock(at: float, window_s: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%H:%M" if window_s <= 86400 else f"{_day_format()} %H:%M")


def _size(value: int | None) -> str:
    return "0" if value == 0 else human_bytes(value)


def caption(summary: ChartSummary) -> str:
    """One line, outcome first: 'main/pg2: lag peaked at 84.0 MB at 03:12, now 0'."""
    ref = summary.ref
    window = window_name(ref.window_s)
    if summary.samples == 0:
        text = f"{CHART_ICON} " + _("{subject}: no history in the last {window} yet").format(
            subject=esc(subject(ref)), window=window
        )
        return text[:CAPTION_LIMIT]
    if summary.replica is None or summary.peak_bytes is None or summary.peak_at is None:
        text = f"{CHART_ICON} " + _(
            "{subject}: no replica lag recorded in the last {window}"
        ).format(subject=esc(subject(ref)), window=window)
    else:
        who = summary.replica if ref.node is not None else f"{ref.cluster}/{summary.replica}"
        peak = {
            "who": f"<b>{esc(who)}</b>",
            "peak": _size(summary.peak_bytes),
            "at": _clock(summary.peak_at, ref.window_s),
        }
        if summary.streaming_now is False:
            text = f"{CHART_ICON} " + _(
                "{who}: lag peaked at {peak} at {at}, not streaming now"
            ).format(**peak)
        else:
            text = f"{CHART_ICON} " + _("{who}: lag peaked at {peak} at {at}, now {now}").format(
                now=_size(summary.now_bytes), **peak
            )
    if summary.outage_s > 0:
        text += "; " + _("not streaming for {duration} in {window}").format(
            duration=human_duration(summary.outage_s), window=window
        )
    return text[:CAPTION_LIMIT]


def alert_chart_caption(summary: ChartSummary) -> str:
    """The caption of the small chart under an alert (the same line as /graph's)."""
    return caption(summary)


def graph_usage(usage: str) -> str:
    """Refusal of /graph arguments it cannot read (plain text)."""
    return _("usage: {usage}").format(usage=usage)


def charts_unavailable() -> str:
    """Refusal of /graph when the bot keeps no monitor history (plain text)."""
    return _("charts are not available: the monitor history is off")
