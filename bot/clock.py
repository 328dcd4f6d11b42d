"""The real clock (the Clock port); tests pass a fake instead."""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    """Monotonic and wall-clock time from the operating system."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        return time.monotonic()

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(seconds)
