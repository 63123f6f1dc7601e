"""An env module for `--env=child_process_envs:InChildProcess-v0`: an env whose steps are
computed by a process of its own that the env starts, as ViZDoom's engine is."""

import subprocess
import sys

import gymnasium as gym
import numpy as np

STEP_CPU_SEC = 0.002  # what each step costs the child process, spent spinning

# Reads a byte per step, spins for STEP_CPU_SEC, answers with a byte.
_SIMULATOR = f"""
import sys, time
while sys.stdin.buffer.read(1):
    end = time.process_time() + {STEP_CPU_SEC}
    while time.process_time() < end:
        pass
    sys.stdout.buffer.write(b"s")
    sys.stdout.buffer.flush()
"""


class InChildProcess(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self._child = None
        self._steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self._child is None:
            self._child = subprocess.Popen([sys.executable, "-c", _SIMULATOR],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._steps = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self._child.stdin.write(b"a")
        self._child.stdin.flush()
        self._child.stdout.read(1)
        self._steps += 1
        return np.zeros(1, np.float32), 0.0, False, self._steps >= 100, {}

    def close(self):
        if self._child is not None:
            self._child.stdin.close()
            self._child.wait(timeout=10)
            self._child = None


gym.register("InChildProcess-v0", entry_point=InChildProcess)
