"""`python tests/helpers/flaky_env_train.py --env=flaky_cartpole --fail_every=N ...`: asyncrl.train
with an env family whose envs raise in step every N steps (never, if N is 0) or always (N=1),
except the first `--healthy_envs` envs (env 0 is also the one asyncrl checks at start-up); env 0 (the first env of rollout worker 0) can also hang for good at step `--hang_at_step`, or
take its worker process down at step `--die_at_step` (0: never) by a segfault or `os._exit(3)`
(`--die_by`)."""

import ctypes
import os
import sys
import time

import gymnasium as gym

from asyncrl import train
from asyncrl.config.params import Param
from asyncrl.envs.registry import EnvFamily, register_env_family


class Flaky(gym.Wrapper):
    def __init__(self, env, fail_every: int, hang_at_step: int, die_at_step: int, die_by: str):
        super().__init__(env)
        self.fail_every = fail_every
        self.hang_at_step = hang_at_step
        self.die_at_step = die_at_step
        self.die_by = die_by
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.hang_at_step:
            time.sleep(1_000_000)
        if self.steps == self.die_at_step:
            if self.die_by == "segfault":
                ctypes.string_at(0)  # reads address 0: SIGSEGV, as a crashing native env would
            os._exit(3)
        if self.fail_every and self.steps % self.fail_every == 0:
            raise RuntimeError(f"simulated env crash at step {self.steps}")
        return self.env.step(action)


register_env_family(EnvFamily(
    name="flaky", matches=lambda name: name == "flaky_cartpole",
    make_env=lambda name, cfg, i: Flaky(gym.make("CartPole-v1"),
                                        cfg.fail_every if i >= cfg.healthy_envs else 0,
                                        cfg.hang_at_step if i == 0 else 0,
                                        cfg.die_at_step if i == 0 else 0, cfg.die_by),
    extra_params=(Param("fail_every", int, 0, "Raise in step every this many steps", "flaky",
                        minimum=0),
                  Param("healthy_envs", int, 0, "The first this many envs never raise", "flaky",
                        minimum=0),
                  Param("hang_at_step", int, 0, "Env 0 hangs at this step", "flaky", minimum=0),
                  Param("die_at_step", int, 0, "Env 0 ends its process at this step", "flaky",
                        minimum=0),
                  Param("die_by", str, "segfault", "How env 0 ends its process", "flaky",
                        choices=("segfault", "exit")))))

if __name__ == "__main__":
    sys.exit(train.main())
