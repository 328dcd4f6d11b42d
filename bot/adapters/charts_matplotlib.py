"""The ChartRenderer port on matplotlib (Agg, object-oriented API: no pyplot, no global state).

matplotlib is imported inside :meth:`MatplotlibCharts.render_png`, on the first chart: an idle
bot does not load it. The method is synchronous and CPU-bound; the chart service calls it in a
worker thread. Three panels share the time axis: byte lag per replica, time lag per replica,
retained WAL per slot; the alert thresholds are dashed lines, and the spans in which a replica
was not streaming are shaded on every panel.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from bot.models import ChartData, ChartLabels

DPI = 100
MIB = 1024.0**2


def _mib(value: int | None) -> float:
    return float("nan") if value is None else value / MIB


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class MatplotlibCharts:
    """Draws a ChartData as a PNG."""

    def render_png(self, data: ChartData) -> bytes:
        """A PNG of exactly ``data.width_px`` x ``data.height_px`` pixels."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import dates as mdates
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(data.width_px / DPI, data.height_px / DPI), dpi=DPI)
        FigureCanvasAgg(figure)
        axes = figure.subplots(3, 1, sharex=True)
        lag_b, lag_s, wal = axes[0], axes[1], axes[2]
        labels, limits = data.labels, data.limits
        figure.suptitle(labels.title, fontsize=11)
        for name, series in data.replicas:
            times = [_when(s.at) for s in series]
            lag_b.plot(
                times,
                [float("nan") if s.lag_bytes is None else s.lag_bytes / MIB for s in series],
                marker="." if len(series) < 3 else None,
                label=name,
            )
            lag_s.plot(
                times,
                [float("nan") if s.lag_s is None else s.lag_s for s in series],
                marker="." if len(series) < 3 else None,
                label=name,
            )
        for name, slots in data.slots:
            wal.plot(
                [_when(s.at) for s in slots],
                [_mib(s.retained_bytes) for s in slots],
                marker="." if len(slots) < 3 else None,
                label=name,
            )
        _limits(lag_b, limits.lag_bytes_warning / MIB, limits.lag_bytes_critical / MIB, labels)
        _limits(lag_s, limits.lag_s_warning, limits.lag_s_critical, labels)
        _limits(wal, limits.retained_warning / MIB, limits.retained_critical / MIB, labels)
        for number, (start, end) in enumerate(data.outages()):
            for ax in axes:
                ax.axvspan(
                    _when(start),
                    _when(max(end, start + 1)),
                    color="tab:red",
                    alpha=0.15,
                    label=labels.outage if number == 0 and ax is lag_b else None,
                )
        lag_b.set_ylabel(labels.lag_bytes_axis, fontsize=8)
        lag_s.set_ylabel(labels.lag_seconds_axis, fontsize=8)
        wal.set_ylabel(labels.retained_axis, fontsize=8)
        wal.set_xlabel(labels.time_axis, fontsize=8)
        wal.set_xlim(_when(data.start), _when(data.end))
        short = data.end - data.start <= 2 * 86400
        formatter = mdates.DateFormatter("%H:%M" if short else labels.day_format, tz=UTC)  # type: ignore[no-untyped-call]
        wal.xaxis.set_major_formatter(formatter)
        for ax in axes:
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper left")
        if not data.replicas and not data.slots:
            lag_b.text(
                0.5, 0.5, labels.no_data, transform=lag_b.transAxes, ha="center", va="center"
            )
        figure.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.08, hspace=0.15)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI)
        return out.getvalue()


def _limits(ax: Any, warning: float, critical: float, labels: ChartLabels) -> None:
    ax.axhline(warning, color="tab:orange", linestyle="--", linewidth=1, label=labels.warning)
    ax.axhline(critical, color="tab:red", linestyle="--", linewidth=1, label=labels.critical)
