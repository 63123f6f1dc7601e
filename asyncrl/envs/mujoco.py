"""gymnasium's MuJoCo continuous-control tasks with Sample Factory's MuJoCo preset (but for its layout
and learning-rate schedule: see MUJOCO_DEFAULTS).

`--env=mujoco_halfcheetah` (Sample Factory's short names: mujoco_hopper, mujoco_walker,
mujoco_ant, mujoco_humanoid, ...) or a raw id such as `--env=HalfCheetah-v5` (any MuJoCo env
gymnasium registers, older versions included). Short names map to the v5 envs. The env is
`gym.make(<id>)` as it is: observations are float64 vectors, actions a 1-D Box in [-1, 1] for
most tasks (clipped to the Box by the env vector).
"""

from __future__ import annotations

import functools
import logging
from functools import lru_cache
from typing import Any

import gymnasium as gym

from asyncrl.envs.env_kwargs import make_with_env_kwargs
from asyncrl.utils.errors import UserError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'asyncrl[mujoco]'"
_ENTRY_POINT_PREFIX = "gymnasium.envs.mujoco."

# Sample Factory's short names (sf_examples/mujoco) -> the gymnasium id they stand for here.
SHORT_NAMES: dict[str, str] = {
    "mujoco_hopper": "Hopper-v5",
    "mujoco_halfcheetah": "HalfCheetah-v5",
    "mujoco_humanoid": "Humanoid-v5",
    "mujoco_ant": "Ant-v5",
    "mujoco_standup": "HumanoidStandup-v5",
    "mujoco_doublependulum": "InvertedDoublePendulum-v5",
    "mujoco_pendulum": "InvertedPendulum-v5",
    "mujoco_reacher": "Reacher-v5",
    "mujoco_walker": "Walker2d-v5",
    "mujoco_pusher": "Pusher-v5",
    "mujoco_swimmer": "Swimmer-v5",
}


def _is_mujoco_id(env_name: str) -> bool:
    """A gymnasium id whose env class lives in gymnasium.envs.mujoco; known without importing
    mujoco, so a missing install is reported by make_mujoco_env rather than as an unknown env."""
    spec = gym.registry.get(env_name)
    return spec is not None and isinstance(spec.entry_point, str) \
        and spec.entry_point.startswith(_ENTRY_POINT_PREFIX)


def matches_mujoco(env_name: str) -> bool:
    return env_name in SHORT_NAMES or _is_mujoco_id(env_name)


def mujoco_names() -> list[str]:
    """Short names and raw ids, for typo suggestions."""
    return sorted(SHORT_NAMES) + sorted(name for name in gym.registry if _is_mujoco_id(name))


def mujoco_env_id(env_name: str) -> str:
    """'mujoco_halfcheetah' -> 'HalfCheetah-v5'; a raw id stays as it is."""
    return SHORT_NAMES.get(env_name, env_name)


@lru_cache(maxsize=None)
def _require_mujoco() -> None:
    """Imports mujoco (a UserError naming the extra without it) and sends its warnings to the
    log, each text once per process: by default mujoco prints every one and appends it to
    MUJOCO_LOG.TXT in the working directory (mujoco 4 warns about a deprecated attribute in
    gymnasium's models each time an env is built)."""
    try:
        import mujoco
    except ImportError:
        raise UserError(f"MuJoCo envs need mujoco, which is not installed: {INSTALL_HINT}") from None
    mujoco.set_mju_user_warning(_log_mujoco_warning)


@lru_cache(maxsize=256)  # bounded: texts with a time stamp in them never repeat
def _log_mujoco_warning(message: str) -> None:
    log.warning("mujoco: %s", message)


def make_mujoco_env(env_name: str, cfg: Any, env_index: int, render_mode: str | None = None
                    ) -> gym.Env:
    _require_mujoco()
    env_id = mujoco_env_id(env_name)
    return make_with_env_kwargs(functools.partial(gym.make, env_id), env_id, cfg,
                                render_mode=render_mode)


# Sample Factory's MuJoCo preset (sf_examples/mujoco/mujoco_params.py) with two differences: its 8
# workers x 8 envs become 2 x 32 for a machine with 2 CPU cores (the same 64 envs, so the same
# batches), and a constant learning rate where it has lr_schedule=linear_decay (the command line
# can add it). Its env_frameskip=1 has no counterpart (no frame skipping for these envs).
MUJOCO_DEFAULTS: dict[str, Any] = {
    "batched_sampling": False,
    "num_workers": 2,
    "num_envs_per_worker": 32,
    "worker_num_splits": 2,
    "train_for_env_steps": 10_000_000,
    "encoder_mlp_layers": [64, 64],
    "use_rnn": False,
    "recurrence": 1,
    "nonlinearity": "tanh",
    "batch_size": 1024,
    "kl_loss_coeff": 0.1,
    "adaptive_stddev": False,
    "policy_initialization": "torch_default",
    "reward_scale": 1.0,
    "rollout": 64,
    "max_grad_norm": 3.5,
    "num_epochs": 2,
    "num_batches_per_epoch": 4,
    "ppo_clip_ratio": 0.2,
    "value_loss_coeff": 1.3,
    "exploration_loss_coeff": 0.0,
    "learning_rate": 0.00295,
    "shuffle_minibatches": False,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "with_vtrace": False,
    "normalize_input": True,
    "normalize_returns": True,
    "value_bootstrap": True,
    "experiment_summaries_interval": 3,
    "save_every_sec": 15,
    "serial_mode": False,
    "async_rl": False,
}
