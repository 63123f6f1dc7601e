"""`python -m asyncrl.enjoy --env=CartPole-v1 --experiment=name`: evaluate a trained policy.

Loads the latest (or `--load_checkpoint_kind=best`) checkpoint of the experiment, plays
`--max_num_episodes` episodes and prints each episode's return, length and custom statistics,
then a summary. `--save_video` records an mp4 into the experiment folder (headless), `--json` also
writes the episodes and the summary to a file. Ctrl+C ends the evaluation early: what was
played is still summarized and written.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from asyncrl.envs.vector import EpisodeStats
from asyncrl.utils.errors import UserError
from asyncrl.utils.logs import setup_console_logging

log = logging.getLogger("asyncrl.enjoy")


def evaluate(argv: Sequence[str] | None = None) -> list[EpisodeStats]:
    """Plays the episodes and returns their statistics."""
    import torch

    from asyncrl.envs.command_line import parse_args
    from asyncrl.envs.registry import env_frames_per_step, find_env_family, make_env
    from asyncrl.envs.vector import EnvVector, EpisodeReporting
    from asyncrl.experiment.experiment import load_experiment_for_eval
    from asyncrl.model.actor_critic import ActorCritic, load_weights
    from asyncrl.runtime.evaluation import EpisodePlayer, summarize
    from asyncrl.utils.device import resolve_device
    from asyncrl.utils.seeding import seed_everything
    from asyncrl.utils.video import (FrameRecorder, Mp4Writer, VideoBudget, check_video_support,
                                     video_fps, video_path)

    parsed = parse_args(argv, scope="enjoy", prog="python -m asyncrl.enjoy")
    cfg, exp_dir, state = load_experiment_for_eval(parsed)
    json_path = _checked_json_path(cfg.json)
    budget = None
    if cfg.save_video:
        check_video_support()
        if cfg.video_frames == 0:
            raise UserError("--video_frames=0 records nothing: give a number of frames, or -1 "
                            "for the first episode")
        budget = VideoBudget(cfg.video_frames)
        path = video_path(exp_dir, cfg.video_name)
    seed_everything(cfg.seed)
    torch.set_num_threads(1)
    family = find_env_family(cfg.env)

    def make(i: int):
        if budget is None:
            return make_env(family, cfg.env, cfg, i)
        return FrameRecorder(make_env(family, cfg.env, cfg, i, render_mode="rgb_array"), cfg.env,
                             budget)

    envs = EnvVector(make, 1, cfg.seed, reporting=EpisodeReporting.of(cfg), env_name=cfg.env)
    video = None if budget is None else Mp4Writer(path, video_fps(cfg.fps, envs.envs[0]))
    device = resolve_device(cfg.device)
    model = ActorCritic(cfg, envs.envs[0].observation_space, envs.action_space).to(device)
    load_weights(model, state.learner.model, f"checkpoint of {exp_dir}")
    model.eval()
    log.info("Evaluating %s (env_steps=%d, policy_version=%d), %s actions", exp_dir,
             state.env_steps, state.learner.policy_version,
             "deterministic" if cfg.eval_deterministic else "sampled")
    episodes: list[EpisodeStats] = []
    frames_per_step = env_frames_per_step(cfg)  # counted like asyncrl.train's env steps
    player = EpisodePlayer(model, envs, device, cfg.eval_deterministic)
    finished = False
    try:
        # The steps that reach --max_num_frames frames.
        max_steps = -(-cfg.max_num_frames // frames_per_step)
        before_step = None if video is None else (lambda: video.add(budget.take()))
        for episode in player.episodes(cfg.max_num_episodes, max_steps, before_step):
            episodes.append(episode)
            print(f"episode {len(episodes)}: {_episode_text(episode)}", flush=True)
        if video is not None:
            video.add(budget.take())
        finished = True
    except KeyboardInterrupt:
        print(f"interrupted after {len(episodes)} episodes", flush=True)
        finished = True
    finally:
        envs.close()
        if video is not None:
            video.close(keep=finished)
    frames = player.steps * frames_per_step
    summary = summarize(episodes)
    print(summary_line(summary, frames))
    if video is not None:
        print(f"video: {video.path} ({video.frames} frames at {video.fps} fps)")
    if json_path is not None:
        report = {"experiment": str(exp_dir), "env": cfg.env,
                  "checkpoint": {"kind": cfg.load_checkpoint_kind, "env_steps": state.env_steps,
                                 "policy_version": state.learner.policy_version},
                  "deterministic": cfg.eval_deterministic, "env_frames": frames,
                  "episodes": [{"return": e.episode_return, "length": e.length, "extra": e.extra}
                               for e in episodes],
                  "summary": summary,
                  "video": None if video is None or not video.frames else str(video.path)}
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"json: {json_path}")
    return episodes


def _checked_json_path(json_file: str | None) -> Path | None:
    """`--json`, checked before anything is played."""
    if json_file is None:
        return None
    path = Path(json_file)
    if not path.parent.is_dir():
        raise UserError(f"--json={json_file}: folder {path.parent} does not exist")
    if path.is_dir():
        raise UserError(f"--json={json_file} is a folder; give a file name")
    return path


def _episode_text(episode: EpisodeStats) -> str:
    extra = "".join(f", {name} {value:.3g}" for name, value in episode.extra.items())
    return f"return {episode.episode_return:.2f}, length {episode.length}{extra}"


def summary_line(summary: dict[str, Any] | None, frames: int) -> str:
    if summary is None:
        return f"no episode finished within {frames} frames"
    extra = "".join(f", {name} {value:.3g}" for name, value in summary["extra_mean"].items())
    return (f"mean return over {summary['episodes']} episodes: {summary['return_mean']:.2f} "
            f"(std {summary['return_std']:.2f}, min {summary['return_min']:.2f}, max "
            f"{summary['return_max']:.2f}), mean length {summary['length_mean']:.1f}{extra}")


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
