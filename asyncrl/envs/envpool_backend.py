"""EnvPool as the vector backend of `--batched_sampling` (`--env_backend=envpool`).

Each split of a rollout worker is one EnvPool instance: its C++ thread pool steps the split's
envs and does the Atari preprocessing (frame skip with the last two frames max-pooled, grayscale,
84x84 area resize, no-ops at reset, FIRE at reset, frame stacking), so a step of 16 Pong envs is
one call from Python. The pool resets a finished env on its next step (gymnasium's "next step"
autoreset, which BatchedEnvVector handles).

asyncrl's parameters map onto EnvPool's config:
    env_frameskip -> frame_skip, env_framestack -> stack_num, noop_max 30 as the built-in family;
    repeat_action_probability 0 for atari_* names, 0.25 for ALE/...-v5 ids (as the built-in
    family), --env_kwargs may set it and mode, difficulty, full_action_space and
    max_num_frames_per_episode (-> max_episode_steps = frames // env_frameskip: 27,000 agent
    steps for ALE's 108,000 frames); the seed of env i is --seed + i (random without --seed);
    --pixel_format=HWC transposes the pool's [stack, 84, 84] observations.
--episodic_life -> episodic_life: a lost life ends the episode (terminated); the pool's next
    step resets the life (its action is ignored, as asyncrl's vector expects of the step after
    an episode's end) and the game goes on;
--clip_reward_sign -> reward_clip (rewards -1, 0, +1);
--use_record_episode_statistics: the game's score (the pool's unclipped info["reward"]) and its
    length in agent steps reported as gymnasium's RecordEpisodeStatistics reports them, at the
    game's end (info["terminated"]) or time limit, not at each lost life.

Differences from the built-in preprocessing (envs/atari.py; docs/atari.md shows them measured):
  - at reset EnvPool presses FIRE for one frame in place of the last no-op, where the built-in
    family then steps FIRE and action 2 for a frame-skipped step each (games with FIRE);
  - in the two games without a NOOP action (Backgammon, VideoCheckers) EnvPool still idles 1-30
    frames at reset, the built-in family does not;
  - the resize rounds differently: from the same emulator state the frames differ by at most 1
    grey level, in a few pixels;
  - the observation of the step that ends the game is the screen of the last complete frame
    skip when the game ends within one (the built-in family shows the last frame): it is never
    learnt from (the episode is over);
  - the time limit counts agent steps from the reset, the built-in one emulator frames from the
    game's start (no-ops and FIRE included);
  - after a lost life the built-in EpisodicLife steps one no-op (and FireReset presses FIRE in
    games that need it) and the frame stack starts again from the new screen; EnvPool resets
    the life its own way, takes no time step for it and keeps the frames of the stack.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from types import ModuleType
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from asyncrl.envs.env_kwargs import env_kwargs
from asyncrl.utils.errors import UserError

INSTALL_HINT = "pip install 'asyncrl[envpool]'"
# --env_kwargs that mean the same to EnvPool's Atari config as to ALE's AtariEnv.
_SHARED_ATARI_KWARGS = ("repeat_action_probability", "mode", "difficulty", "full_action_space")
_MAX_FRAMES_KWARG = "max_num_frames_per_episode"


def import_envpool() -> ModuleType:
    """The envpool module, or a one-line UserError with the extra to install."""
    try:
        import envpool
    except ImportError:
        raise UserError(f"--env_backend=envpool needs envpool, which is not installed: "
                        f"{INSTALL_HINT}") from None
    return envpool


@lru_cache(maxsize=None)
def envpool_task_ids() -> dict[str, str]:
    """Lower-case id -> EnvPool's id of each task it has (ALE's TicTacToe3D-v5 is its
    TicTacToe3d-v5)."""
    return {task.lower(): task for task in import_envpool().list_all_envs()}


def envpool_config(family_name: str, env_name: str, cfg: Any) -> tuple[str, dict[str, Any]]:
    """EnvPool's task id and config for `env_name` of the env family `family_name` under `cfg`
    (seed, sizes and threads aside), or a one-line UserError for what EnvPool cannot do here. The
    config check calls it too, so that a run fails before it starts."""
    if family_name != "atari":
        raise UserError(f"--env_backend=envpool: --env={env_name} (env family {family_name}) has "
                        f"no EnvPool backend here, only Atari games (atari_*, ALE/...-v5) have; "
                        f"use --env_backend=builtin")
    if not cfg.batched_sampling:
        raise UserError("--env_backend=envpool steps the envs of each split as one vector: it "
                        "needs --batched_sampling=True")
    from asyncrl.envs.atari import (NOOP_MAX, PREFIX, SCREEN_SIZE, ale_env_id,
                                    check_game_score_reporting)

    check_game_score_reporting(cfg)

    import_envpool()
    ale_id = ale_env_id(env_name)  # 'ALE/Pong-v5'
    task = envpool_task_ids().get(ale_id[len("ALE/"):].lower())
    if task is None:
        raise UserError(f"--env_backend=envpool: EnvPool has no Atari game {ale_id} (--env="
                        f"{env_name}); use --env_backend=builtin")
    ale_kwargs = gym.spec(ale_id).kwargs
    frames_per_episode = ale_kwargs[_MAX_FRAMES_KWARG]
    config: dict[str, Any] = {
        "frame_skip": cfg.env_frameskip,
        "stack_num": cfg.env_framestack,
        "noop_max": NOOP_MAX,
        "use_fire_reset": True,
        "episodic_life": bool(cfg.episodic_life),
        "reward_clip": bool(cfg.clip_reward_sign),
        "img_height": SCREEN_SIZE,
        "img_width": SCREEN_SIZE,
        "gray_scale": True,
        "use_inter_area_resize": True,
        # atari_* names are Sample Factory's NoFrameskip-v4 games, without sticky actions; raw
        # ALE/...-v5 ids keep v5's, as in the built-in family
        "repeat_action_probability": (0.0 if env_name.startswith(PREFIX)
                                      else ale_kwargs["repeat_action_probability"]),
    }
    for key, value in env_kwargs(cfg).items():
        if key in _SHARED_ATARI_KWARGS:
            config[key] = value
        elif key == _MAX_FRAMES_KWARG:
            frames_per_episode = value
        else:
            allowed = ", ".join((*_SHARED_ATARI_KWARGS, _MAX_FRAMES_KWARG))
            raise UserError(f"--env_kwargs: {key} is not taken with --env_backend=envpool (it "
                            f"takes {allowed})")
    # The built-in family truncates an episode after this many emulator frames; EnvPool counts
    # agent steps.
    config["max_episode_steps"] = max(1, int(frames_per_episode) // cfg.env_frameskip)
    return task, config


def pool_threads(num_envs: int, num_workers: int) -> int:
    """Threads of one pool: the worker's share of the cores it may run on. A rollout worker
    pinned to one core (--set_workers_cpu_affinity) gets one thread, which steps its envs
    without switching; unpinned, the workers share the cores. A worker steps one split at a
    time, so each of its pools may use the whole share."""
    return max(1, min(num_envs, len(os.sched_getaffinity(0)) // num_workers))


class EnvPoolVector(gym.vector.VectorEnv):
    """An EnvPool instance as a gymnasium VectorEnv with batched spaces (EnvPool's own spaces are
    those of one env) and "next step" autoreset. EnvPool seeds its envs when it is made, so a
    reset with another seed makes the pool again with that seed.

    With `record_statistics` each game's score and length are in info['episode'] at its end,
    whether or not a lost life ends an episode."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, make_pool: Callable[[int], Any], num_envs: int, seed: int,
                 channels_last: bool, record_statistics: bool = False):
        self._make_pool = make_pool
        self._seed = seed
        self.pool = make_pool(seed)
        self.num_envs = num_envs
        self._channels_last = channels_last
        self._record_statistics = record_statistics
        self._game_over = np.zeros(num_envs, dtype=bool)  # the next step is the pool's reset
        self._scores = np.zeros(num_envs)  # the running game's score, length and start
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._starts = np.full(num_envs, time.perf_counter())
        space = self.pool.observation_space
        if channels_last:
            space = gym.spaces.Box(np.moveaxis(space.low, 0, -1), np.moveaxis(space.high, 0, -1),
                                   dtype=space.dtype)
        self.single_observation_space = space
        self.single_action_space = self.pool.action_space
        self.observation_space = gym.vector.utils.batch_space(space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(obs, 1, -1)) if self._channels_last else obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options:
            raise ValueError(f"EnvPoolVector.reset takes no options, got {options}")
        if seed is not None and seed != self._seed:
            self.pool.close()
            self._seed = seed
            self.pool = self._make_pool(seed)
        obs, info = self.pool.reset()
        self._game_over[:] = False
        self._scores[:], self._lengths[:], self._starts[:] = 0.0, 0, time.perf_counter()
        return self._obs(obs), info

    def step(self, actions: Any):
        obs, rewards, terminated, truncated, info = self.pool.step(np.asarray(actions))
        if self._record_statistics:
            self._record(info, info["terminated"].astype(bool) | truncated)
        return self._obs(obs), rewards, terminated, truncated, info

    def _record(self, info: dict[str, Any], game_over: np.ndarray) -> None:
        """Adds the step to each game's score and length (the pool's reset step after a game's
        end starts the next game; a life's reset counts, as the built-in family's no-op) and puts
        the games that ended in info['episode'] (return, length, seconds: RecordEpisodeStatistics'
        keys) with its mask info['_episode']."""
        now = time.perf_counter()
        restarted = self._game_over
        self._scores[restarted], self._lengths[restarted], self._starts[restarted] = 0.0, 0, now
        playing = ~restarted
        self._scores[playing] += info["reward"][playing]
        self._lengths[playing] += 1
        self._game_over = game_over
        if game_over.any():
            info["episode"] = {"r": self._scores.copy(), "l": self._lengths.copy(),
                               "t": np.round(now - self._starts, 6)}
            info["_episode"] = game_over.copy()

    def close_extras(self, **kwargs: Any) -> None:
        self.pool.close()


def make_envpool_vector_env(family_name: str, env_name: str, cfg: Any, first_env_index: int,
                            num_envs: int) -> EnvPoolVector:
    """`num_envs` envs of `env_name` in one EnvPool, env i seeded --seed + first_env_index + i."""
    task, config = envpool_config(family_name, env_name, cfg)
    envpool = import_envpool()
    threads = pool_threads(num_envs, cfg.num_workers)

    def make_pool(seed: int) -> Any:
        return envpool.make(task, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                            num_threads=threads, seed=seed, **config)

    if cfg.seed is None:  # EnvPool's own default seed is fixed (42)
        seed = int(np.random.default_rng().integers(2 ** 31 - num_envs))
    else:
        seed = cfg.seed + first_env_index
    return EnvPoolVector(make_pool, num_envs, seed, channels_last=cfg.pixel_format == "HWC",
                         record_statistics=cfg.use_record_episode_statistics)
