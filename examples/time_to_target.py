"""Wall-clock time until `python -m asyncrl.train` reaches a target average return.

    python examples/time_to_target.py --target=-250 --limit=600 -- --env=Pendulum-v1 --seed=1

starts the training command given after `--` (in a fresh temporary train dir unless it has
--train_dir), reads its status lines (one every 5 s) and prints the seconds since the process was
started at which the average return over the last --min_episodes episodes (or more) first
reached --target. It then stops the run with SIGINT (as Ctrl+C would: a final checkpoint, exit
0). It exits 0 when the target was reached, 1 when the run ended or --limit seconds passed first.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

# The runner's status line: env_steps=... fps=... avg_return=X (last N of M episodes) ...
STATUS = re.compile(r"env_steps=(\d+) fps=\d+ avg_return=(\S+) \(last (\d+) of \d+ episodes\)")


def parse_status(line: str) -> tuple[int, float, int] | None:
    """(env steps, average return, episodes averaged) from a status line, else None."""
    match = STATUS.search(line)
    if match is None or match.group(2) == "n/a":
        return None
    return int(match.group(1)), float(match.group(2)), int(match.group(3))


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
        # -u: status lines must arrive when printed, not when the pipe's buffer fills.
        return _time_run([sys.executable, "-u", "-m", "asyncrl.train", *train_args], args)


def _time_run(command: list[str], args: argparse.Namespace) -> int:
    print("running:", " ".join(command), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The limit must hold even while the run prints nothing.
    watchdog = threading.Timer(args.limit, proc.send_signal, (signal.SIGINT,))
    watchdog.start()
    reached = None
    try:
        for line in proc.stdout:
            elapsed = time.monotonic() - start
            print(f"{elapsed:7.1f}s | {line}", end="", flush=True)
            status = parse_status(line)
            if reached is None and status and status[2] >= args.min_episodes \
                    and status[1] >= args.target:
                reached = (elapsed, *status)
                proc.send_signal(signal.SIGINT)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait()
    if reached is None:
        print(f"target {args.target} NOT reached within {time.monotonic() - start:.1f} s")
        return 1
    elapsed, env_steps, avg, episodes = reached
    print(f"target {args.target} reached after {elapsed:.1f} s wall-clock (process start "
          f"included): avg_return={avg} over {episodes} episodes at {env_steps} env steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
