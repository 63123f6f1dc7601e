"""`python -m asyncrl.enjoy --env=CartPole-v1 --experiment=name`: evaluate a trained policy.

Loads the latest (or `--load_checkpoint_kind=best`) checkpoint of the experiment, plays
`--max_num_episodes` episodes and prints each episode's return and the mean.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from asyncrl.envs.vector import EpisodeStats
from asyncrl.runtime.stats import EpisodeTracker
from asyncrl.utils.errors import UserError
from asyncrl.utils.logs import setup_console_logging

log = logging.getLogger("asyncrl.enjoy")


def evaluate(argv: Sequence[str] | None = None) -> list[EpisodeStats]:
    """Plays the episodes and returns their statistics."""
    import numpy as np
    import torch

    from asyncrl.algo.learner import Learner
    from asyncrl.config.parser import parse_args
    from asyncrl.envs.registry import env_frames_per_step, find_env_family, make_env
    from asyncrl.envs.vector import EnvVector, EpisodeReporting
    from asyncrl.experiment.experiment import load_experiment_for_eval
    from asyncrl.utils.seeding import seed_everything
    from asyncrl.utils.device import resolve_device

    parsed = parse_args(argv, scope="enjoy", prog="python -m asyncrl.enjoy")
    cfg, exp_dir, state = load_experiment_for_eval(parsed)
    seed_everything(cfg.seed)
    torch.set_num_threads(1)
    family = find_env_family(cfg.env)
    envs = EnvVector(lambda i: make_env(family, cfg.env, cfg, i), 1, cfg.seed,
                     reporting=EpisodeReporting.of(cfg))
    learner = Learner(cfg, envs.envs[0].observation_space, envs.action_space, resolve_device(cfg.device))
    learner.load_weights(state["model"], f"checkpoint of {exp_dir}")
    model = learner.model.eval()
    log.info("Evaluating %s (env_steps=%d, policy_version=%d), %s actions", exp_dir,
             state["env_steps"], state["policy_version"],
             "deterministic" if cfg.eval_deterministic else "sampled")
    episodes: list[EpisodeStats] = []
    frames = 0
    frames_per_step = env_frames_per_step(cfg)  # counted like asyncrl.train's env steps
    everyone = np.arange(envs.agents_per_env)  # every agent of the one env
    try:
        while len(episodes) < cfg.max_num_episodes and frames < cfg.max_num_frames:
            obs = {k: torch.from_numpy(v).to(learner.device) for k, v in envs.obs.items()}
            actions = model.policy_step(obs, deterministic=cfg.eval_deterministic).actions.cpu()
            result = envs.step(everyone, actions.numpy())
            frames += frames_per_step
            for episode in result.episodes:
                episodes.append(episode)
                extra = "".join(f", {name} {value:.3g}" for name, value in episode.extra.items())
                print(f"episode {len(episodes)}: return {episode.episode_return:.2f}, "
                      f"length {episode.length}{extra}", flush=True)
    finally:
        envs.close()
    print(summary_line(episodes, frames))
    return episodes


def summary_line(episodes: list[EpisodeStats], frames: int) -> str:
    """The mean return (and custom statistics) of the evaluated episodes."""
    if not episodes:
        return f"no episode finished within {frames} frames"
    tracker = EpisodeTracker(len(episodes))
    tracker.add(episodes)
    extra = "".join(f", {name} {value:.3g}" for name, value in tracker.extra_averages().items())
    return f"mean return over {len(episodes)} episodes: {tracker.average():.2f}{extra}"


def main(argv: Sequence[str] | None = None) -> int:
    setup_console_logging()
    try:
        evaluate(argv)
    except UserError as e:
        print(f"asyncrl: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
