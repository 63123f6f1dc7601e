"""Envs that break their own contract get one line naming the env and what is wrong, at the first
such step: at start-up (exit 2, nothing on disk), or in the middle of a run (the run stops with
exit 1 instead of hanging or recreating the env forever)."""

import gymnasium as gym
import numpy as np
import pytest

from helpers.training_process import finish, start

from asyncrl import train
from asyncrl.envs.observations import EnvContractError
from asyncrl.envs.vector import BatchedEnvVector, EnvRaised, EnvVector
from asyncrl.utils.errors import UserError


pytestmark = pytest.mark.usefixtures("space_envs")


@pytest.mark.parametrize("env_id, message", [
    ("WrongShape-v0", "env 0: observation is an array of shape (3,) and dtype float32 "
     "([0.0, 0.0, 0.0]) but its space is Box(-1.0, 1.0, (4,), float32)"),
    ("FloatImage-v0", "env 0: observation is an array of shape (3, 8, 8) and dtype float64 but "
     "its space is Box(0, 255, (3, 8, 8), uint8)"),
    ("NanObs-v0", "env 0: observation holds NaN values"),
    ("NanReward-v0", "env 0: the reward is NaN"),
    ("TextReward-v0", "env 0: the reward is str '1.0', not a number"),
    ("OldReset-v0", "env 0: reset() returned ndarray; gymnasium envs return (observation, info)"),
    ("OldStep-v0", "env 0: step() returned 4 values; gymnasium envs return (observation, reward, "
     "terminated, truncated, info)"),
    ("GoalOutOfRange-v0", "env 0: observation holds outside [0, 3] values (int64 7)"),
    ("RaisesOnReset-v0", "env 0: reset() raised RuntimeError: the simulator is not running "
     "(at space_envs.py:"),
])
def test_a_broken_env_is_one_line_at_start_up_and_nothing_is_written(tmp_path, capsys, env_id,
                                                                       message):
    code = train.main([f"--env=space_envs:{env_id}", f"--train_dir={tmp_path}", "--experiment=exp",
                       "--device=cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"asyncrl: error: --env=space_envs:{env_id}: ") and message in err, err
    assert not (tmp_path / "exp").exists()


def test_env_vector_names_the_env_and_the_key(space_envs):
    class Goal(space_envs._Fine):
        observation_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,)),
                                             "goal": gym.spaces.Discrete(3)})
        goal = 1

        def _obs(self):
            return {"pos": np.zeros(2, np.float32), "goal": self.goal}

    class BadGoal(Goal):
        goal = 1.5

    with pytest.raises(EnvContractError, match=r"^--env=bad: env 1: observation 'goal' is float64 "
                                               r"1.5 but its space is Discrete\(3\)$"):
        EnvVector(lambda i: Goal() if i == 0 else BadGoal(), 2, seed=0, env_name="bad")
    with pytest.raises(EnvContractError, match=r"^--env=bad: env 0: its observation is an "
                                               r"array .*, which does not have the structure of its space Dict"):
        EnvVector(lambda i: type("Flat", (Goal,), {"_obs": lambda self: np.zeros(2)})(), 1,
                  seed=0, env_name="bad")


def test_nan_in_a_vector_env_is_named_by_env(space_envs):
    def make(first, n):
        return gym.vector.SyncVectorEnv([space_envs._Fine] * (n - 1) + [space_envs.NanObs])

    envs = BatchedEnvVector(make, 4, 2, seed=0, env_name="v")
    with pytest.raises(EnvContractError, match=r"^--env=v: env 3: observation holds NaN values"):
        envs.step(np.array([2, 3]), np.array([0, 1]))


def test_strict_env_vector_reports_what_an_env_raised_in_step(space_envs):
    class RaisesInStep(space_envs._Fine):
        def step(self, action):
            raise KeyError("joint 7")

    with pytest.raises(EnvRaised, match=r"env 0: step\(\) raised KeyError: 'joint 7' \(at "
                                        r"test_env_contract.py:\d+\)"):
        EnvVector(lambda i: RaisesInStep(), 1, seed=0, strict=True).warm_up([1])
    assert issubclass(EnvRaised, UserError) and issubclass(EnvContractError, UserError)


@pytest.mark.slow
def test_an_env_that_breaks_mid_run_stops_the_run_with_its_line(tmp_path):
    code, out = finish(start(tmp_path, "--env=space_envs:BreaksLater-v0", "--num_workers=2",
                             "--num_envs_per_worker=2", "--rollout=8", "--batch_size=32",
                             "--decorrelate_envs_on_one_worker=false", "--device=cpu",
                             "--encoder_mlp_layers", "8", "--use_rnn=false",
                             script=["-m", "asyncrl.train"]), timeout=90)
    assert code == 1, out
    assert "--env=space_envs:BreaksLater-v0: env 0: observation is an array of shape (3,)" in out
    assert "Traceback" not in out
