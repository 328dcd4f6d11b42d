"""contrib/make-readme-chart.py draws the README's Russian chart through the real chart
service and adapter; the committed picture is a small, whole PNG of the chart's size."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

from tests.unit.test_graph import png_size
from tests.unit.test_i18n_tour import english_runs

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_readme_chart", ROOT / "contrib" / "make-readme-chart.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_chart_shows_the_spike_and_the_outage_in_russian() -> None:
    png, caption = asyncio.run(_script().draw())
    assert png_size(png) == (1000, 600)
    assert caption == "📈 pg2: пик отставания 84.0 MB в 03:12, сейчас 0; поток не шёл 30 мин за 6 ч"
    assert not english_runs(caption)
    committed = (ROOT / "docs" / "chart-ru.png").read_bytes()
    assert png_size(committed) == (1000, 600)
    assert len(committed) < 150_000
