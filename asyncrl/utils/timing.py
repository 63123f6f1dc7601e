"""Where a component's time goes: named, accumulated wall-clock seconds."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator


class Timings:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.started = time.monotonic()

    @contextmanager
    def timeit(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] += time.monotonic() - start

    def snapshot(self) -> dict[str, float]:
        """Seconds per activity, plus the component's total lifetime under 'total'."""
        return {**self.seconds, "total": time.monotonic() - self.started}
