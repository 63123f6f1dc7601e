"""Wall-clock time until `python -m asyncrl.train` reaches a target average return.

    python examples/time_to_target.py --target=-250 --limit=600 -- --env=Pendulum-v1 --seed=1

starts the training command given after `--` (in a fresh temporary train dir unless it has
--train_dir), reads the status events it writes into its experiment folder (`status.jsonl`, one
every 5 s) and prints the seconds since the process was started at which the average return over
the last --min_episodes episodes (or more) first reached --target. It then stops the run with
SIGINT (as Ctrl+C would: a final checkpoint, exit 0). It exits 0 when the target was reached, 1
when the run ended or --limit seconds passed first.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from asyncrl.envs.command_line import parse_args
from asyncrl.experiment.layout import STATUS_EVENTS_FILE
from asyncrl.experiment.status_events import STATUS, latest_run, read_events

POLL_SEC = 0.5


def first_reached(events: list[dict[str, Any]], pid: int, target: float,
                  min_episodes: int) -> dict[str, Any] | None:
    """The first status event of the run of process `pid` whose average return (over
    `min_episodes` episodes or more) is `target` or more."""
    run = latest_run(events)
    if not run or run[0].get("pid") != pid:  # not yet started, or an earlier run's events
        return None
    for event in run:
        policy = event["policies"][0] if event["event"] == STATUS else None
        if policy and policy["avg_return"] is not None and policy["returns_averaged"] >= min_episodes \
                and policy["avg_return"] >= target:
            return event
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=float, required=True)
    parser.add_argument("--limit", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--min_episodes", type=int, default=100,
                        help="only averages over at least this many episodes count")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then asyncrl.train arguments")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    with tempfile.TemporaryDirectory(prefix="asyncrl-ttt-") as tmp:
        if not any(a.startswith("--train_dir") for a in train_args):
            train_args.append(f"--train_dir={tmp}")
        cfg = parse_args(train_args, "train", "python -m asyncrl.train").config()
        status_file = Path(cfg.train_dir) / cfg.experiment / STATUS_EVENTS_FILE
        # -u: its output shows as it is printed, not when the pipe's buffer fills.
        return _time_run([sys.executable, "-u", "-m", "asyncrl.train", *train_args], status_file, args)


def _time_run(command: list[str], status_file: Path, args: argparse.Namespace) -> int:
    print("running:", " ".join(command), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def echo() -> None:
        for line in proc.stdout:
            print(f"{time.monotonic() - start:7.1f}s | {line}", end="", flush=True)

    printer = threading.Thread(target=echo, daemon=True)
    printer.start()
    reached = None
    try:
        while reached is None and proc.poll() is None and time.monotonic() - start < args.limit:
            time.sleep(POLL_SEC)
            reached = first_reached(read_events(status_file), proc.pid, args.target, args.min_episodes)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait()
        printer.join()
    reached = reached or first_reached(read_events(status_file), proc.pid, args.target,
                                       args.min_episodes)
    if reached is None:
        print(f"target {args.target} NOT reached within {time.monotonic() - start:.1f} s")
        return 1
    policy = reached["policies"][0]
    print(f"target {args.target} reached after {reached['uptime']:.1f} s wall-clock (process start "
          f"included): avg_return={policy['avg_return']} over {policy['returns_averaged']} episodes "
          f"at {reached['env_steps']} env steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
