"""Benchmark: does population-based training rescue a bad learning rate?

    python examples/pbt_benchmark.py [--seconds=120] [--bad_learning_rate=1e-5]

Runs, one after the other and for the same wall-clock time each:
  (a) one PBT run of 4 CartPole policies, two of which start with the bad learning rate;
  (b) 4 independent runs of the bad configuration at the same time (each with a quarter of the
      envs, so both sides step as many envs on the same cores);
and prints every policy's average return over its last 100 episodes and the best of each side.
The experiments stay in --train_dir for `python -m asyncrl.plot`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from asyncrl.experiment.checkpoint import CheckpointManager
from asyncrl.experiment.checkpoint_state import read_checkpoint_state
from asyncrl.experiment.layout import policy_checkpoint_dir

# No step budget (the CartPole preset's would end the runs early): both sides run for --seconds.
COMMON = ["--env=CartPole-v1", "--device=cpu", "--restart_behavior=overwrite", "--seed=1",
          "--rollout=32", "--batch_size=512", "--train_for_env_steps=10000000000"]


def final_returns(exp_dir: Path, policies: int) -> list[float]:
    returns = []
    for p in range(policies):
        latest = CheckpointManager(exp_dir / policy_checkpoint_dir(p), 1_000_000).latest()
        episodes = read_checkpoint_state(latest).run.episode_stats["returns"] if latest else []
        returns.append(float(np.mean(episodes)) if episodes else float("nan"))
    return returns


def train(train_dir: Path, experiment: str, *argv: str) -> subprocess.Popen:
    log = open(train_dir / f"{experiment}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "asyncrl.train", *COMMON, f"--train_dir={train_dir}",
                             f"--experiment={experiment}", *argv], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120, help="wall-clock time of each side")
    parser.add_argument("--bad_learning_rate", type=float, default=1e-5)
    parser.add_argument("--pbt_period_env_steps", type=int, default=10_000)
    parser.add_argument("--train_dir", type=Path, default=Path("train_dir/pbt_benchmark"))
    args = parser.parse_args()
    args.train_dir.mkdir(parents=True, exist_ok=True)
    bad = f"{args.bad_learning_rate:g}"
    duration = f"--train_for_seconds={args.seconds}"

    print(f"(a) PBT, 4 policies, policies 2 and 3 start with learning_rate={bad}: {args.seconds} s")
    population = train(args.train_dir, "pbt", duration, "--num_policies=4", "--with_pbt=True",
                       "--num_workers=2", "--num_envs_per_worker=8",
                       f"--pbt_start_mutation={args.pbt_period_env_steps}",
                       f"--pbt_period_env_steps={args.pbt_period_env_steps}",
                       "--policy_initial_hyperparameters", f"2:learning_rate={bad}",
                       f"3:learning_rate={bad}")
    if population.wait() != 0:
        print(f"the PBT run failed: see {args.train_dir / 'pbt.log'}")
        return 1
    pbt = final_returns(args.train_dir / "pbt", 4)

    print(f"(b) 4 independent runs with learning_rate={bad}, at the same time: {args.seconds} s")
    runs = [train(args.train_dir, f"independent_{i}", duration, f"--learning_rate={bad}",
                  "--num_workers=1", "--num_envs_per_worker=4", f"--seed={i + 1}") for i in range(4)]
    if any(run.wait() != 0 for run in runs):
        print(f"an independent run failed: see the logs in {args.train_dir}")
        return 1
    independent = [final_returns(args.train_dir / f"independent_{i}", 1)[0] for i in range(4)]

    def fmt(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    print(f"PBT population, average return of the last 100 episodes per policy: {fmt(pbt)}")
    print(f"independent runs of learning_rate={bad}: {fmt(independent)}")
    best_pbt, best_independent = max(pbt), max(independent)
    print(f"best policy: PBT {best_pbt:.1f} vs independent {best_independent:.1f} "
          f"({'PBT better' if best_pbt > best_independent else 'PBT NOT better'})")
    print(f"PBT events: {args.train_dir / 'pbt' / 'pbt' / 'events.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
