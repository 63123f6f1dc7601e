"""Running statistics for people: episode returns, lengths and custom statistics over the last
`stats_avg` episodes, FPS."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from asyncrl.envs.vector import EpisodeStats


class EpisodeTracker:
    """Returns, lengths and custom statistics (`info["episode_extra_stats"]`) of the last
    `stats_avg` episodes; a custom statistic is averaged over the last `stats_avg` episodes that
    reported it."""

    def __init__(self, stats_avg: int):
        self.stats_avg = stats_avg
        self.returns: deque[float] = deque(maxlen=stats_avg)
        self.lengths: deque[int] = deque(maxlen=stats_avg)
        self.extra: dict[str, deque[float]] = {}
        self.episodes = 0

    def add(self, episodes: list[EpisodeStats]) -> None:
        for episode in episodes:
            self.returns.append(episode.episode_return)
            self.lengths.append(episode.length)
            for name, value in episode.extra.items():
                self._extra(name).append(value)
        self.episodes += len(episodes)

    def _extra(self, name: str) -> deque[float]:
        if name not in self.extra:
            self.extra[name] = deque(maxlen=self.stats_avg)
        return self.extra[name]

    def average(self, metric: str = "reward") -> float | None:
        values = self.returns if metric == "reward" else self.lengths
        return sum(values) / len(values) if values else None

    def extra_averages(self) -> dict[str, float]:
        """Custom statistic -> its average, by name."""
        return {name: sum(values) / len(values) for name, values in sorted(self.extra.items())}

    def state_dict(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lengths": list(self.lengths),
                "extra": {name: list(values) for name, values in self.extra.items()},
                "episodes": self.episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns.extend(float(r) for r in state["returns"])
        self.lengths.extend(int(n) for n in state["lengths"])
        for name, values in state.get("extra", {}).items():  # absent in older checkpoints
            self._extra(name).extend(float(v) for v in values)
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
        """Over the last `window` seconds of records, measured from the latest record at least
        that old (or the oldest one): with sparse records (a slow learner reports seldom) a
        baseline a moment ago would turn one report's steps into a huge rate."""
        if len(self._history) < 2:
            return 0.0
        now, steps = self._history[-1]
        base_t, base_steps = self._history[0]
        for t, s in self._history:
            if now - t < window:
                break
            base_t, base_steps = t, s
        return (steps - base_steps) / (now - base_t) if now > base_t else 0.0
