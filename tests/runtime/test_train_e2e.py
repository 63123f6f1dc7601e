"""End to end, as a user runs it: `python -m asyncrl.train` in a subprocess stops cleanly on
Ctrl+C / SIGTERM with a checkpoint, and resumes after a SIGKILL. (That the CartPole preset learns
is test_quickstart.py's: the README's first run.)"""

import re
import signal
import time
from pathlib import Path

import pytest

from helpers.training_process import finish, start, wait_for

from asyncrl.experiment.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

def checkpoints(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_exits_0_and_resume_continues_the_step_counter(tmp_path, sig):
    tiny = ["--num_workers=1", "--num_envs_per_worker=4", "--rollout=16", "--batch_size=64",
            "--num_batches_per_epoch=1"]
    proc = start(tmp_path, *tiny, "--train_for_env_steps=1000000000")
    wait_for(lambda: (tmp_path / "exp" / "summaries").exists(), proc)
    time.sleep(1.5)
    proc.send_signal(sig)
    code, out = finish(proc, timeout=30)
    assert code == 0, out
    assert f"{sig.name} received" in out
    saved = load_checkpoint(checkpoints(tmp_path)[-1])["env_steps"]
    assert saved > 0

    code, out = finish(start(tmp_path, f"--train_for_env_steps={saved + 256}"))
    assert code == 0, out
    assert f"Resumed from env_steps={saved}" in out
    assert load_checkpoint(checkpoints(tmp_path)[-1])["env_steps"] >= saved + 256


def test_sigkill_mid_run_then_rerun_resumes_from_last_checkpoint(tmp_path):
    proc = start(tmp_path, "--num_workers=1", "--num_envs_per_worker=4", "--rollout=16",
                 "--batch_size=64", "--num_batches_per_epoch=1", "--save_every_sec=1",
                 "--keep_checkpoints=3", "--train_for_env_steps=1000000000")
    wait_for(lambda: len(checkpoints(tmp_path)) >= 2, proc)
    time.sleep(0.7)
    proc.kill()
    proc.communicate()
    folder = tmp_path / "exp" / "checkpoint_p0"
    survivors = checkpoints(tmp_path)
    last_steps = max(load_checkpoint(p)["env_steps"] for p in survivors)  # each one loads

    code, out = finish(start(tmp_path, f"--train_for_env_steps={last_steps + 128}"))
    assert code == 0, out
    match = re.search(r"Resumed from env_steps=(\d+)", out)
    assert match and int(match.group(1)) == last_steps
    assert not list(folder.glob(".*.tmp"))
