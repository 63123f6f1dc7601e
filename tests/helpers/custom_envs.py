"""A user's env module for `--env=custom_envs:Corridor-v0`: importing it registers the id.

Corridor-v0: every episode lasts exactly LENGTH steps; action 1 earns reward 1, action 0 nothing.
At the end of an episode, `info["episode_extra_stats"]` reports `right_moves` (the number of 1s:
equal to the episode's return) and `half_right` (that number / 2).
"""

import gymnasium as gym
import numpy as np

LENGTH = 5


class Corridor(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self.t = 0
        self.right_moves = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / LENGTH, 1.0], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.right_moves = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.right_moves += int(action)
        terminated = self.t >= LENGTH
        info = {}
        if terminated:
            info["episode_extra_stats"] = {"right_moves": self.right_moves,
                                           "half_right": self.right_moves / 2}
        return self._obs(), float(action), terminated, False, info

    def render(self):
        frame = np.zeros((16, 24, 3), dtype=np.uint8)
        frame[:, : 4 * self.t] = 255
        return frame


gym.register("Corridor-v0", entry_point=Corridor)
