"""A real (serial, tiny) training run writes its status events: a start, status ticks whose env
steps rise, and a summary that says what the final log line says; a resumed run appends its own."""

import json
import re

import pytest

from asyncrl import train
from asyncrl.experiment.status_events import START, STATUS, SUMMARY, latest_run, read_events
from asyncrl.runtime import runner

pytestmark = pytest.mark.slow

TINY = ["--env=CartPole-v1", "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=4",
        "--rollout=16", "--batch_size=64", "--num_batches_per_epoch=1", "--encoder_mlp_layers", "16",
        "--experiment=exp"]


def test_a_run_writes_rising_status_events_and_a_summary_that_matches_its_log(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "STATUS_INTERVAL_SEC", 0.3)  # several ticks in a short run
    assert train.main([*TINY, f"--train_dir={tmp_path}", "--train_for_env_steps=2000"]) == 0
    events = read_events(tmp_path / "exp" / "status.jsonl")
    assert events[0]["event"] == START and not events[0]["resumed"] and events[0]["env_steps"] == 0
    ticks = [e for e in events if e["event"] == STATUS]
    assert len(ticks) >= 2
    steps = [t["env_steps"] for t in ticks]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert all(t["agent_steps"] == t["env_steps"] for t in ticks)  # CartPole: a frame a step
    assert [t["time"] for t in ticks] == sorted(t["time"] for t in ticks)
    assert ticks[-1]["policies"][0]["avg_return"] is not None

    summary = events[-1]
    assert summary["event"] == SUMMARY
    log = (tmp_path / "exp" / "asyncrl_log.txt").read_text()
    total, seconds, fps = re.search(r"Stopped: .* (\d+) env steps in ([\d.]+) s \(([\d.]+) env steps/s",
                                    log).groups()
    assert summary["stop_reason"] == "reached train_for_env_steps=2000"
    assert summary["env_steps"] == int(total) >= 2000
    assert f"{summary['seconds']:.1f}" == seconds and f"{summary['fps']:.0f}" == fps
    finished = json.loads((tmp_path / "exp" / "finished.json").read_text())
    assert finished["env_steps"] == summary["env_steps"]
    assert summary["policies"][0]["env_steps"] == summary["env_steps"]

    # A resumed run appends: its own start (marked resumed, at the steps it resumes from) and on.
    assert train.main([*TINY, f"--train_dir={tmp_path}", "--train_for_env_steps=2500"]) == 0
    events = read_events(tmp_path / "exp" / "status.jsonl")
    run = latest_run(events)
    assert run[0]["event"] == START and run[0]["resumed"] and len(run) < len(events)
    assert run[0]["env_steps"] > 0 and run[-1]["event"] == SUMMARY
    assert run[-1]["env_steps"] >= 2500
