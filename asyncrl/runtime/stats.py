"""Running statistics for people: episode returns over the last `stats_avg` episodes, FPS."""

from __future__ import annotations

import time
from collections import deque



class EpisodeTracker:
    def __init__(self, stats_avg: int):
        self.returns: deque[float] = deque(maxlen=stats_avg)
        self.lengths: deque[int] = deque(maxlen=stats_avg)
        self.episodes = 0

    def add(self, episodes: list[tuple[float, int]]) -> None:
        """(return, length) of each finished episode."""
        for episode_return, length in episodes:
            self.returns.append(episode_return)
            self.lengths.append(length)
        self.episodes += len(episodes)

    def average(self, metric: str = "reward") -> float | None:
        values = self.returns if metric == "reward" else self.lengths
        return sum(values) / len(values) if values else None

    def state_dict(self) -> dict[str, list]:
        return {"returns": list(self.returns), "lengths": list(self.lengths),
                "episodes": self.episodes}

    def load_state_dict(self, state: dict[str, list]) -> None:
        self.returns.extend(float(r) for r in state["returns"])
        self.lengths.extend(int(n) for n in state["lengths"])
        self.episodes = int(state["episodes"])


class FpsMeter:
    """Env frames per second over sliding windows (e.g. 10, 60 and 300 seconds)."""

    def __init__(self, windows: tuple[int, ...] = (10, 60, 300)):
        self.windows = windows
        self._history: deque[tuple[float, int]] = deque()

    def record(self, env_steps: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._history.append((now, env_steps))
        while self._history and now - self._history[0][0] > max(self.windows) + 1:
            self._history.popleft()

    def fps(self, window: int) -> float:
        if len(self._history) < 2:
            return 0.0
        now, steps = self._history[-1]
        for t, s in self._history:
            if now - t <= window:
                return (steps - s) / (now - t) if now > t else 0.0
        return 0.0
