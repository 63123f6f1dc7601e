"""PBT decisions on synthetic objectives: who is replaced, by whom, what mutates and by how much."""

import json
import math
import re

import numpy as np
import pytest

from helpers.training_process import finish, start, wait_for

from asyncrl import plot
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.pbt.decisions import TUNED_HYPERPARAMETERS, PbtSettings, perturb, plan_round

SETTINGS = PbtSettings(replace_fraction=0.3, mutation_rate=0.15, replace_reward_gap=0.1,
                       replace_reward_gap_absolute=1e-6, perturb_min=1.1, perturb_max=1.5,
                       optimize_gamma=False)
NO_MUTATION = PbtSettings(**{**SETTINGS.__dict__, "mutation_rate": 0.0})
ALWAYS_MUTATE = PbtSettings(**{**SETTINGS.__dict__, "mutation_rate": 1.0})


def hyperparameters(n):
    return [{"learning_rate": 1e-3 * (p + 1), "exploration_loss_coeff": 0.01, "value_loss_coeff": 0.5,
             "max_grad_norm": 4.0, "ppo_clip_ratio": 0.1, "ppo_clip_value": 1.0, "gamma": 0.99}
            for p in range(n)]


def test_worst_policies_copy_a_top_policy_and_its_hyperparameters():
    objectives = [10.0, 50.0, 30.0, 5.0, 40.0, 20.0]  # ceil(0.3 * 6) = 2: top 1, 4; bottom 3, 0
    result = plan_round(objectives, hyperparameters(6), NO_MUTATION, np.random.default_rng(0))
    assert sorted(r.policy for r in result.replacements) == [0, 3]
    for r in result.replacements:
        assert r.source in (1, 4) and r.source_objective == objectives[r.source]
        assert result.hyperparameters[r.policy] == hyperparameters(6)[r.source]
    untouched = [1, 2, 4, 5]
    assert [result.hyperparameters[p] for p in untouched] == [hyperparameters(6)[p] for p in untouched]
    assert result.mutations == []


@pytest.mark.parametrize("objectives, replaced", [  # ceil(0.3 * 3) = 1: 2 may copy 0
    ([100.0, 95.0, 90.5], []),  # 90.5 trails 100 by 9.5%: below the 10% relative gap
    ([100.0, 95.0, 89.0], [2]),  # 11% behind
    ([0.0, 0.0, 0.0], []),  # all equal
    ([1e-7, 0.0, 0.0], []),  # relatively huge, absolutely below 1e-6
    ([-100.0, -105.0, -111.0], [2]),  # negative returns: the gap is relative to |best|
])
def test_both_gaps_must_be_exceeded(objectives, replaced):
    result = plan_round(objectives, hyperparameters(3), NO_MUTATION, np.random.default_rng(0))
    assert [r.policy for r in result.replacements] == replaced


def test_nan_objective_ranks_last_and_never_serves_as_source():
    objectives = [float("nan"), 3.0, 1.0]
    for seed in range(20):
        result = plan_round(objectives, hyperparameters(3), NO_MUTATION, np.random.default_rng(seed))
        assert [(r.policy, r.source) for r in result.replacements] == [(0, 1)]


def test_ties_rank_the_lower_index_higher():
    result = plan_round([5.0, 5.0, 1.0], hyperparameters(3), NO_MUTATION, np.random.default_rng(0))
    assert [(r.policy, r.source) for r in result.replacements] == [(2, 0)]


def test_a_single_policy_is_left_alone():
    result = plan_round([1.0], hyperparameters(1), ALWAYS_MUTATE, np.random.default_rng(0))
    assert result.replacements == [] and result.mutations == []


def test_small_population_where_top_and_bottom_overlap():
    settings = PbtSettings(**{**SETTINGS.__dict__, "replace_fraction": 0.5, "mutation_rate": 1.0})
    # ceil(0.5 * 3) = 2: top 0, 1; bottom 1, 2 -> only 2 is replaced and only 2 mutates.
    result = plan_round([3.0, 2.0, 1.0], hyperparameters(3), settings, np.random.default_rng(0))
    assert [r.policy for r in result.replacements] == [2]
    assert {m.policy for m in result.mutations} == {2}


def test_every_policy_below_the_top_mutates_every_tuned_value_when_the_rate_is_one():
    # ceil(0.3 * 4) = 2 policies on top: 0 and 1 stay as they are.
    result = plan_round([4.0, 3.0, 2.0, 1.0], hyperparameters(4), ALWAYS_MUTATE, np.random.default_rng(1))
    mutated = {(m.policy, m.name) for m in result.mutations}
    assert mutated == {(p, name) for p in (2, 3) for name in TUNED_HYPERPARAMETERS}
    for m in result.mutations:
        assert result.hyperparameters[m.policy][m.name] == m.new
        ratio = m.new / m.old
        assert 1.1 - 1e-9 <= max(ratio, 1 / ratio) <= 1.5 + 1e-9
    assert all(h["gamma"] == 0.99 for h in result.hyperparameters)  # pbt_optimize_gamma off


def test_mutation_rate_is_the_probability_of_each_change():
    rng = np.random.default_rng(7)
    changes = sum(len(plan_round([2.0, 1.0], hyperparameters(2), SETTINGS, rng).mutations)
                  for _ in range(2000))
    expected = 2000 * len(TUNED_HYPERPARAMETERS) * 0.15
    assert abs(changes - expected) < 5 * math.sqrt(expected)


def test_gamma_moves_its_horizon_and_stays_below_one():
    settings = PbtSettings(**{**SETTINGS.__dict__, "optimize_gamma": True})
    rng = np.random.default_rng(3)
    for _ in range(200):
        new = perturb(0.99, "gamma", settings, rng)
        ratio = (1 - new) / (1 - 0.99)
        assert new < 1.0 and 1.1 - 1e-9 <= max(ratio, 1 / ratio) <= 1.5 + 1e-9


def test_same_objectives_and_seed_give_the_same_decisions():
    objectives = [1.0, 9.0, 4.0, 7.0, 2.0, 8.0, 0.5, 3.0]
    a = plan_round(objectives, hyperparameters(8), SETTINGS, np.random.default_rng(42))
    b = plan_round(objectives, hyperparameters(8), SETTINGS, np.random.default_rng(42))
    assert a == b and a.replacements


# -- the population in a real run -------------------------------------------------------------

POPULATION = ["--serial_mode=True", "--num_policies=4", "--with_pbt=True", "--seed=1",
              "--num_workers=1", "--num_envs_per_worker=8", "--worker_num_splits=1", "--rollout=16",
              "--batch_size=32", "--pbt_start_mutation=3000", "--pbt_period_env_steps=3000",
              "--pbt_mutation_rate=0.5", "--pbt_replace_reward_gap=0.05",
              "--policy_initial_hyperparameters", "2:learning_rate=1e-7", "3:learning_rate=1e-7",
              "--save_every_sec=1", "--experiment_summaries_interval=1"]


def _events(exp):
    path = exp / "pbt" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _latest_checkpoints(exp):
    return [sorted((exp / f"checkpoint_p{p}").glob("checkpoint_*.pth"))[-1] for p in range(4)]


def _logged_hyperparameters(out):
    """policy -> {name: value} from the 'Policy i hyperparameters: ...' lines at the start."""
    logged = {}
    for policy, values in re.findall(r"Policy (\d+) hyperparameters: (.*)", out):
        logged[int(policy)] = {k: float(v) for k, v in (item.split("=") for item in values.split())}
    return logged


@pytest.mark.slow
def test_population_replaces_mutates_and_resumes_where_it_was(tmp_path):
    exp = tmp_path / "exp"
    proc = start(tmp_path, *POPULATION, "--train_for_env_steps=1000000000")
    wait_for(lambda: {e["event"] for e in _events(exp)} == {"replace", "mutate"}, proc, timeout=180)
    round_done = (exp / "pbt" / "events.jsonl").stat().st_mtime
    wait_for(lambda: all((exp / f"checkpoint_p{p}").is_dir() and _latest_checkpoints(exp)[p].stat().st_mtime
                         > round_done + 0.5 for p in range(4)), proc, timeout=60)
    proc.kill()  # SIGKILL: no final checkpoint; the regular ones are all there is
    out_before = proc.communicate()[0]
    events = _events(exp)
    assert "PBT: policy" in out_before and "takes the weights, optimizer state and hyperparameters" in out_before
    for e in events:
        if e["event"] == "replace":
            assert e["source_objective"] > e["objective"] and e["policy"] != e["source"]
            assert f"policy {e['policy']} (objective" in out_before
        else:
            assert e["old"] != e["new"] and 1.1 <= max(e["old"], e["new"]) / min(e["old"], e["new"]) <= 1.5
    stored = [load_checkpoint(path) for path in _latest_checkpoints(exp)]
    assert [s["hyperparameters"]["learning_rate"] for s in stored] != [3e-3, 3e-3, 1e-7, 1e-7]
    clock = stored[0]["pbt"]["next_round"]
    assert clock > 3000 and all(s["pbt"]["next_round"] >= clock - 3000 for s in stored)

    code, out = finish(start(tmp_path, "--train_for_seconds=10"), timeout=120)
    assert code == 0, out
    # The population continues with the stored hyperparameters, not the command line's.
    logged = _logged_hyperparameters(out)
    assert logged == {p: pytest.approx(s["hyperparameters"], rel=1e-5) for p, s in enumerate(stored)}
    assert "Resumed policy 3 from env_steps=" in out
    steps = [int(n) for n in re.findall(r"PBT round at (\d+) env steps", out)]
    assert all(n >= max(s["pbt"]["next_round"] for s in stored) for n in steps), (steps, out)
    curves = plot.read_curves(exp, "pbt/learning_rate")
    assert [c.label for c in curves] == ["exp p0", "exp p1", "exp p2", "exp p3"]
    assert curves[2].values[0] == pytest.approx(1e-7)


def test_a_replaced_policy_becomes_its_source_and_drops_its_former_experience(tmp_path):
    """The learner side of a replacement, in one process: weights and optimizer state of the
    source, new hyperparameters, and no training on experience of the policy it was."""
    import gymnasium
    import torch
    from faster_fifo import Queue
    from signal_slot.signal_slot import EventLoop

    from helpers.harness import collect

    from asyncrl.envs.command_line import parse_args
    from asyncrl.experiment.checkpoint import CheckpointManager, save_checkpoint_atomic
    from asyncrl.model.actor_critic import ActorCritic
    from asyncrl.config.hyperparameters import hyperparameters_of
    from asyncrl.runtime.buffers import SharedWeights
    from asyncrl.experiment.checkpoint_state import RunState
    from asyncrl.runtime.learner_worker import LearnerStart, LearnerWorker

    cfg = parse_args(["--env=CartPole-v1", "--use_rnn=false", "--serial_mode=true", "--num_workers=1",
                      "--num_envs_per_worker=4", "--worker_num_splits=1", "--rollout=8",
                      "--batch_size=32", "--num_batches_per_epoch=1", "--device=cpu"], "train",
                     "test").config()
    got = collect(cfg, rollouts=2)
    env = gymnasium.make("CartPole-v1")
    obs_space, action_space = env.observation_space, env.action_space
    own = ActorCritic(cfg, obs_space, action_space)
    source = ActorCritic(cfg, obs_space, action_space)
    source_optimizer = torch.optim.Adam(source.parameters(), lr=1e-3)
    sum(p.sum() for p in source.parameters()).backward()
    source_optimizer.step()  # so that the source's optimizer has state to copy
    save_checkpoint_atomic({"model": source.state_dict(), "optimizer": source_optimizer.state_dict()},
                           tmp_path / "share_p1.pth")
    loop = EventLoop("test", serial_mode=True)
    learner = LearnerWorker(loop, cfg, 0, obs_space, action_space, got.buffers,
                            SharedWeights(own, 0), Queue(1_000_000),
                            CheckpointManager(tmp_path / "checkpoint_p0", 2),
                            LearnerStart(hyperparameters_of(cfg)))
    learner.on_start()
    new = {**hyperparameters_of(cfg), "learning_rate": 0.5, "gamma": 0.9}
    learner.on_pbt_replace(str(tmp_path / "share_p1.pth"), 1, new)
    for name, tensor in source.state_dict().items():
        assert torch.equal(learner.learner.model.state_dict()[name], tensor)
    copied = learner.learner.optimizer.state_dict()["state"]
    assert len(copied) == len(list(source.parameters()))
    for k, v in source_optimizer.state_dict()["state"].items():
        assert torch.equal(copied[k]["exp_avg"], v["exp_avg"])
    assert learner.learner.policy_version == 1 and int(learner.weights.version[0]) == 1
    assert learner.cfg.gamma == 0.9 and learner.learner.learning_rate == 0.5
    assert learner.checkpoint_state(RunState({}, None)).hyperparameters == new
    assert cfg.gamma != 0.9  # the run's config is untouched

    first, second = got.slots[:4], got.slots[4:8]  # each one batch of 4 trajectories x 8 steps
    learner.on_trajectories(first, [])  # acted by version 0: the policy it replaced
    assert learner.pbt_dropped_trajectories == 4 and learner.learner.policy_version == 1
    got.buffers.policy_versions[torch.tensor(second)] = 1  # acted by the new self
    learner.on_trajectories(second, [])
    assert learner.pbt_dropped_trajectories == 4 and learner.learner.policy_version == 2


def test_population_rounds_are_reproducible_and_follow_their_clock(tmp_path):
    from asyncrl.envs.command_line import parse_args
    from asyncrl.config.hyperparameters import initial_hyperparameters
    from asyncrl.pbt.population import Population

    cfg = parse_args(["--env=CartPole-v1", "--num_policies=4", "--with_pbt=True", "--seed=7",
                      "--pbt_start_mutation=100", "--pbt_period_env_steps=50",
                      "--pbt_mutation_rate=0.5", "--pbt_target_objective=coins"],
                     "train", "test").config()
    plans = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        population = Population(cfg, tmp_path / run, initial_hyperparameters(cfg), None)
        assert not population.due([100, 100, 99, 300])  # every policy must have reached it
        objectives = population.objectives([1.0, 2.0, 3.0, 4.0], [{"coins": 5.0}, {}, {"coins": 1.0},
                                                                   {"coins": 9.0}])
        assert objectives[:1] + objectives[2:] == [5.0, 1.0, 9.0] and math.isnan(objectives[1])
        assert population.due([100, 120, 130, 300])
        plans.append(population.plan(objectives, [100, 120, 130, 300]))
        assert population.next_round == 150  # the next period after the slowest policy's steps
        population.plan(objectives, [260, 260, 260, 260])
        assert population.next_round == 300  # periods that passed unseen are skipped, not queued
    assert plans[0] == plans[1]
    assert {r.policy for r in plans[0].replacements} == {1, 2}  # the two last, NaN among them
    events = (tmp_path / "a" / "pbt" / "events.jsonl").read_text().splitlines()
    assert json.loads(events[0])["event"] == "replace"
    assert json.loads((tmp_path / "b" / "pbt" / "hyperparameters_p1.json").read_text()) == \
        population.hyperparameters[1]  # after the last round
