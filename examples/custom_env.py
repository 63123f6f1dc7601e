"""Train on your own environment: register an env family with its own parameter and defaults.

    python examples/custom_env.py --env=noisy_cartpole --noise_std=0.05 --experiment=noisy

`--noise_std` appears in `--help` (with --env=noisy_cartpole), is validated, stored in config.json
and restored on resume like any built-in parameter.
"""

import sys

import gymnasium as gym
import numpy as np

from asyncrl import train
from asyncrl.config.params import Param
from asyncrl.envs.gym_envs import CARTPOLE_DEFAULTS
from asyncrl.envs.registry import EnvFamily, register_env_family


class ObservationNoise(gym.ObservationWrapper):
    def __init__(self, env: gym.Env, std: float, seed: int):
        super().__init__(env)
        self.std = std
        self.rng = np.random.default_rng(seed)

    def observation(self, obs):
        return (obs + self.rng.normal(0.0, self.std, size=obs.shape)).astype(obs.dtype)


def make_noisy_cartpole(env_name: str, cfg, env_index: int, render_mode=None) -> gym.Env:
    # render_mode: asyncrl.enjoy --save_video asks for 'rgb_array' frames
    return ObservationNoise(gym.make("CartPole-v1", render_mode=render_mode), cfg.noise_std,
                            seed=env_index)


NOISY_CARTPOLE = EnvFamily(
    name="noisy_cartpole",
    matches=lambda name: name == "noisy_cartpole",
    make_env=make_noisy_cartpole,
    extra_params=(Param("noise_std", float, 0.1, "Std of the Gaussian noise added to "
                        "observations", "noisy cartpole", minimum=0.0),),
    default_overrides=CARTPOLE_DEFAULTS,
    known_names=lambda: ["noisy_cartpole"],
)


def main() -> int:
    register_env_family(NOISY_CARTPOLE)
    return train.main()


if __name__ == "__main__":
    sys.exit(main())
