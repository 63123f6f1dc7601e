"""(c) The learner alone: training iterations on random batches of the training-batch shape, in
this process, as env frames per second."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from asyncrl.benchmark.figures import Result
from asyncrl.benchmark.plan import Plan
from asyncrl.envs.registry import env_frames_per_step, find_env_family


def random_obs(space: gym.Space, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """`shape` + the space's shape of random observations in the space."""
    if isinstance(space, gym.spaces.Box):
        if np.issubdtype(space.dtype, np.integer):
            info = np.iinfo(space.dtype)
            low = np.clip(space.low, info.min, info.max).astype(np.int64)
            high = np.clip(space.high, info.min, info.max).astype(np.int64)
            return rng.integers(low, high, size=(*shape, *space.shape), endpoint=True,
                                dtype=np.int64).astype(space.dtype)
        if space.dtype == np.bool_:
            return rng.integers(0, 2, size=(*shape, *space.shape)).astype(np.bool_)
        values = rng.standard_normal((*shape, *space.shape))
        return np.clip(values, space.low, space.high).astype(space.dtype)
    flat = [space.sample() for _ in range(int(np.prod(shape)))]
    return np.asarray(flat).reshape(*shape, *np.asarray(flat[0]).shape)


def random_batch(learner: Any, obs_space: gym.Space, rollout: int, num_trajectories: int,
                 rng: np.random.Generator) -> Any:
    """Trajectories of the training-batch shape: random observations, rewards and dones; actions,
    log-probabilities, distribution parameters and values from the learner's own (untrained) model,
    so that they are valid and consistent."""
    import torch

    from asyncrl.algo.trajectories import Trajectories
    from asyncrl.envs.observations import obs_dict_space

    T, B = rollout, num_trajectories
    obs = {key: torch.as_tensor(random_obs(space, (T + 1, B), rng))
           for key, space in obs_dict_space(obs_space).spaces.items()}
    acted = learner.model.policy_step({k: v[:T].flatten(0, 1).to(learner.device)
                                       for k, v in obs.items()})

    def steps(t: Any) -> Any:  # [T * B, ...] -> [T, B, ...]
        return t.detach().cpu().reshape(T, B, *t.shape[1:])

    return Trajectories(
        obs=obs, actions=steps(acted.actions), log_probs=steps(acted.log_probs),
        action_params=steps(acted.action_params), values=steps(acted.values),
        rewards=torch.as_tensor(rng.uniform(-1.0, 1.0, (T, B)), dtype=torch.float32),
        dones=torch.as_tensor(rng.random((T, B)) < 0.01, dtype=torch.float32),
        valid=torch.ones((T, B), dtype=torch.bool),
        policy_versions=torch.zeros((T, B), dtype=torch.int64),
        rnn_states=(torch.zeros((T + 1, B, learner.model.rnn_state_size))
                    if learner.model.rnn_state_size else None))


def run_learner_limit(plan: Plan) -> Result:
    """`Learner.train` on one random batch of the training-batch shape, again and again for
    `seconds` after one warm-up iteration, in a process set up as asyncrl.train sets up its
    processes (set_up_torch_process; the torch threads are restored afterwards, the memory
    setting stays)."""
    import torch

    from asyncrl.algo.learner import Learner
    from asyncrl.runtime.supervisor import set_up_torch_process
    from asyncrl.utils.device import resolve_device

    cfg = plan.cfg
    env = find_env_family(plan.env).make_env(plan.env, cfg, 0)
    try:
        obs_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    threads = torch.get_num_threads()
    set_up_torch_process()
    try:
        learner = Learner(cfg, obs_space, action_space, resolve_device(cfg.device))
        batch = random_batch(learner, obs_space, cfg.rollout,
                             cfg.batch_size * cfg.num_batches_per_epoch // cfg.rollout,
                             np.random.default_rng(0 if cfg.seed is None else cfg.seed))
        learner.train(batch)  # warm-up: allocations, optimizer state
        samples_per_batch = batch.rollout * batch.num_trajectories
        samples, start = 0, time.monotonic()
        while True:
            learner.train(batch)
            samples += samples_per_batch
            elapsed = time.monotonic() - start
            if elapsed >= plan.seconds:
                break
    finally:
        torch.set_num_threads(threads)
    per_sec = samples / elapsed
    frames = env_frames_per_step(cfg)  # counted as asyncrl.train counts env steps
    return Result(system="learner limit", env_frames_per_sec=per_sec * frames,
                  env_steps=samples * frames, seconds=elapsed, samples_per_sec=per_sec)

