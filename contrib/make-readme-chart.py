"""Draw the README's example chart: /graph main/pg2 6h, labelled in Russian, from a synthetic
history (one lag spike, then half an hour not streaming while the slot keeps WAL), through the
real chart service and matplotlib adapter, into docs/chart-ru.png.

    PYTHONPATH=. .venv/bin/python contrib/make-readme-chart.py [OUTPUT.png]

Deterministic: the same history (seeded noise) and clock every run.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from bot.adapters.charts_matplotlib import MatplotlibCharts
from bot.config import parse_config
from bot.models import History, ReplicaSample, SlotSample
from bot.services.charts import WINDOWS, ChartService
from handlers import i18n
from handlers.render import graph as render_graph
from handlers.render import to_plain_text

MB = 1024**2
END = datetime(2026, 12, 2, 6, 0, tzinfo=UTC).timestamp()  # "now" on the chart: 06:00 UTC
POLL_S = 15.0
CONFIG = """
[telegram]
[audit]
path = "/tmp/replbot-readme-chart.sqlite3"
[[users]]
id = 1
name = "readme"
role = "viewer"
[[clusters]]
name = "main"
[[clusters.nodes]]
name = "pg1"
role = "primary"
dsn = "host=pg1 user=replbot dbname=postgres"
[[clusters.nodes]]
name = "pg2"
role = "replica"
dsn = "host=pg2 user=replbot dbname=postgres"
slot = "pg2"
"""


def _at(hour: int, minute: int) -> float:
    return datetime(2026, 12, 2, hour, minute, tzinfo=UTC).timestamp()


SPIKE_START, SPIKE_PEAK, SPIKE_END = _at(3, 0), _at(3, 12), _at(3, 30)
OUTAGE_START, OUTAGE_END = _at(4, 20), _at(4, 50)


def synthetic_history() -> History:
    """Six hours of polls of main/pg2: a bulk load's lag spike peaking at 84 MB at 03:12, and
    the replica down from 04:20 to 04:50 while its slot retains WAL, which it then replays."""
    noise = random.Random(10)
    replicas: list[ReplicaSample] = []
    slots: list[SlotSample] = []
    retained = 40.0 * MB
    at = END - WINDOWS["6h"] + POLL_S
    while at <= END:
        streaming = not OUTAGE_START <= at < OUTAGE_END
        if SPIKE_START <= at <= SPIKE_END:
            edge = SPIKE_START if at <= SPIKE_PEAK else SPIKE_END
            share = 1 - abs(at - SPIKE_PEAK) / abs(SPIKE_PEAK - edge)
            lag = 84 * MB * share
        elif OUTAGE_END <= at < OUTAGE_END + 600:  # catching up after the outage
            lag = 60 * MB * (1 - (at - OUTAGE_END) / 600)
        else:
            lag = noise.uniform(0, 1.5) * MB
        if at > END - 300:
            lag = 0.0  # caught up: "now 0"
        if not streaming:
            retained += 0.7 * MB * POLL_S  # the primary keeps writing; the slot holds it all
        elif retained > 48 * MB:
            retained = max(48.0 * MB, retained - 1.0 * MB * POLL_S)
        else:
            retained = 40 * MB + noise.uniform(0, 8) * MB
        replicas.append(
            ReplicaSample(
                "main",
                "pg2",
                at,
                int(lag) if streaming else None,
                lag / (2 * MB) if streaming else None,  # ~2 MB/s replay
                streaming,
            )
        )
        slots.append(SlotSample("main", "pg2", at, int(retained)))
        at += POLL_S
    return History(tuple(replicas), tuple(slots))


class _History:
    """The HistoryStore port's read side over the synthetic history."""

    def __init__(self, history: History) -> None:
        self._history = history

    async def record(self, replicas: object, slots: object) -> None:
        raise NotImplementedError

    async def history(self, cluster: str, since: float) -> History:
        return History(
            tuple(r for r in self._history.replicas if r.cluster == cluster and r.at >= since),
            tuple(s for s in self._history.slots if s.cluster == cluster and s.at >= since),
        )

    async def compact(self, now: float) -> tuple[int, int]:
        return 0, 0


class _Clock:
    def monotonic(self) -> float:
        return 0.0

    def time(self) -> float:
        return END

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


async def draw() -> tuple[bytes, str]:
    """The chart's PNG and its caption (plain text)."""
    config = parse_config(tomllib.loads(CONFIG), {"REPLBOT_TELEGRAM_TOKEN": "1:dummy"})
    service = ChartService(config, _History(synthetic_history()), MatplotlibCharts(), _Clock())
    ref = service.target("pg2", "main", "6h")
    with i18n.language("ru"):
        png, summary = await service.draw(ref, render_graph.labels(ref))
        caption = to_plain_text(render_graph.caption(summary))
    return png, caption


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/chart-ru.png")
    png, caption = asyncio.run(draw())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(png)
    print(f"{output}: {output.stat().st_size} bytes; caption: {caption}")


if __name__ == "__main__":
    main()
