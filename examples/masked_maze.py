"""An env of your own with action masks: a small maze in which moves into walls are not allowed.

Importing this module registers `MaskedMaze-v0`; train and evaluate it from the repository root:

    python -m asyncrl.train --env=examples.masked_maze:MaskedMaze-v0 --config=configs/masked_maze.yaml --experiment=maze
    python -m asyncrl.enjoy --env=examples.masked_maze:MaskedMaze-v0 --experiment=maze --eval_deterministic=true

Each episode a 6x6 grid gets random walls, a start and a goal. The observation is a Dict: `grid`
(3 x 6 x 6 planes: walls, the agent, the goal) and `action_mask` (up, down, left, right: 1 where
the move stays on the grid and off the walls), the convention asyncrl shares with PettingZoo and
Sample Factory. The policy never samples a masked move, so the env need not define what one does;
it still counts any it is given (`invalid_moves`, reported with every episode, is 0 in training
and evaluation). Reaching the goal pays 1, every step costs 0.02, and an episode ends after 40
steps.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIZE = 6
MAX_STEPS = 40
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])  # up, down, left, right
WALL_DENSITY = 0.25


class MaskedMaze(gym.Env):
    observation_space = gym.spaces.Dict({
        "grid": gym.spaces.Box(0, 1, (3, SIZE, SIZE), np.uint8),
        "action_mask": gym.spaces.MultiBinary(len(MOVES)),
    })
    action_space = gym.spaces.Discrete(len(MOVES))

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        while True:
            self.walls = self.np_random.random((SIZE, SIZE)) < WALL_DENSITY
            free = np.argwhere(~self.walls)
            self.agent, self.goal = free[self.np_random.choice(len(free), 2, replace=False)]
            if self._reachable():
                break
        self.steps = 0
        self.invalid_moves = 0
        return self._obs(), {}

    def _reachable(self) -> bool:
        seen, frontier = {tuple(self.agent)}, [tuple(self.agent)]
        while frontier:
            cell = np.array(frontier.pop())
            for move in MOVES:
                nxt = tuple(cell + move)
                if self._free(nxt) and nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        return tuple(self.goal) in seen

    def _free(self, cell) -> bool:
        return 0 <= cell[0] < SIZE and 0 <= cell[1] < SIZE and not self.walls[cell[0], cell[1]]

    def _mask(self) -> np.ndarray:
        return np.array([self._free(self.agent + move) for move in MOVES], dtype=np.int8)

    def _obs(self) -> dict:
        grid = np.zeros((3, SIZE, SIZE), np.uint8)
        grid[0] = self.walls
        grid[1][tuple(self.agent)] = 1
        grid[2][tuple(self.goal)] = 1
        return {"grid": grid, "action_mask": self._mask()}

    def step(self, action):
        if self._mask()[int(action)]:
            self.agent = self.agent + MOVES[int(action)]
        else:
            self.invalid_moves += 1
        self.steps += 1
        reached = bool((self.agent == self.goal).all())
        reward = (1.0 if reached else 0.0) - 0.02
        truncated = not reached and self.steps >= MAX_STEPS
        info = {}
        if reached or truncated:
            info["episode_extra_stats"] = {"invalid_moves": self.invalid_moves,
                                           "reached_goal": float(reached)}
        return self._obs(), reward, reached, truncated, info


gym.register("MaskedMaze-v0", entry_point=MaskedMaze)
