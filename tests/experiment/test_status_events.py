"""The status events file (`<experiment>/status.jsonl`): what the writer appends, and a reader
that leaves out a line cut short by a kill."""

import json
import math

from asyncrl.envs.command_line import parse_args
from asyncrl.experiment.status_events import (EVALUATION, START, STATUS, SUMMARY, PolicyStatus,
                                              StatusEventWriter, last_event, latest_run,
                                              parse_events, read_events)


def policy(env_steps: int, avg_return: float | None) -> PolicyStatus:
    return PolicyStatus(policy=0, env_steps=env_steps, version=3, episodes=12, returns_averaged=12,
                        avg_return=avg_return, best_metric=None, policy_lag_versions=1.5,
                        policy_lag_sgd_steps=24.0, policy_lag_max_versions=3.0,
                        policy_lag_max_sgd_steps=48.0, dropped_trajectories=0, eval_return=None,
                        eval_env_steps=None)


def test_events_round_trip_and_a_torn_last_line_is_left_out(tmp_path):
    cfg = parse_args(["--env=CartPole-v1", "--experiment=exp"], "train", "t").config()
    path = tmp_path / "status.jsonl"
    writer = StatusEventWriter(path, frames_per_step=4)
    writer.run_started(cfg, env_steps=0, resumed=False)
    writer.status(4096, 800.0, [policy(4096, None)])
    writer.evaluation(0, 4096, 3, True, {"return_mean": 9.5, "episodes": 4,
                                         "extra_mean": {"coins": 2.5}})
    writer.summary("reached train_for_seconds=5", 8192, 5.0, 1638.4, 0, [policy(8192, math.nan)])
    events = read_events(path)
    assert [e["event"] for e in events] == [START, STATUS, EVALUATION, SUMMARY]
    start, status, evaluation, summary = events
    assert start["experiment"] == "exp" and start["env"] == "CartPole-v1" and not start["resumed"]
    assert start["frames_per_step"] == 4 and start["pid"] > 0
    # env steps count frames, agent steps the agent's decisions
    assert (status["env_steps"], status["agent_steps"], status["fps"]) == (4096, 1024, 800.0)
    assert status["policies"][0]["policy_lag_sgd_steps"] == 24.0
    assert status["policies"][0]["avg_return"] is None
    assert status["time"] >= start["time"] and status["uptime"] > 0
    assert evaluation["return_mean"] == 9.5 and evaluation["extra_mean"] == {"coins": 2.5}
    assert (evaluation["policy"], evaluation["version"], evaluation["deterministic"]) == (0, 3, True)
    assert summary["policies"][0]["avg_return"] is None  # NaN is not JSON: null
    assert summary["seconds"] == 5.0 and summary["stop_reason"].startswith("reached")

    # A kill in the middle of a write leaves a torn last line: the reader leaves it out, and the
    # next run's writer ends it, so that its own first event stays whole.
    with open(path, "a") as f:
        f.write('{"event": "status", "env_st')
    assert read_events(path) == events
    again = StatusEventWriter(path, frames_per_step=4)
    again.run_started(cfg, env_steps=8192, resumed=True)
    events = read_events(path)
    assert len(events) == 5 and events[-1]["resumed"] and events[-1]["env_steps"] == 8192
    assert latest_run(events) == events[-1:]
    assert last_event(path) == status and last_event(path, (SUMMARY,)) == summary
    assert last_event(path, (STATUS, SUMMARY)) == summary
    assert last_event(tmp_path / "none.jsonl") is None and read_events(tmp_path / "none.jsonl") == []


def test_last_event_reads_back_past_its_first_block(tmp_path):
    path = tmp_path / "status.jsonl"
    lines = [json.dumps({"event": STATUS, "env_steps": 1})]
    lines += [json.dumps({"event": EVALUATION, "pad": "x" * 1000, "i": i}) for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    assert last_event(path, (STATUS,)) == {"event": STATUS, "env_steps": 1}
    assert last_event(path, (EVALUATION,))["i"] == 199
    assert last_event(path, (SUMMARY,)) is None
    assert parse_events('[1, 2]\n{"no": "event"}\n\n') == []
