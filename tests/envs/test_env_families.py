"""Env packages that register gymnasium ids when imported (MiniGrid, BabyAI, ViZDoom) work by their
plain ids, keep the module:EnvId form, suggest ids for typos and name the extra when missing."""

import sys

import gymnasium as gym
import pytest

from helpers.install_hints import assert_train_names_extra

from asyncrl.envs.command_line import parse_args
from asyncrl.envs.registry import make_env, make_vector_env
from asyncrl.utils.errors import UserError


def parsed(*argv: str):
    return parse_args(list(argv), scope="train", prog="test")


@pytest.fixture(autouse=True)
def in_tmp_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # ViZDoom writes _vizdoom.ini into the working directory


@pytest.mark.parametrize("env, family, env_class", [
    ("MiniGrid-DoorKey-5x5-v0", "minigrid", "DoorKeyEnv"),
    ("BabyAI-GoToLocal-v0", "minigrid", "GoToLocal"),
    ("minigrid:MiniGrid-DoorKey-5x5-v0", "minigrid", "DoorKeyEnv"),
    ("VizdoomBasic-v1", "vizdoom", "VizdoomScenarioEnv"),
])
def test_plain_ids_make_their_env(env, family, env_class):
    args = parsed(f"--env={env}")
    cfg = args.config()
    assert args.family.name == family
    made = make_env(args.family, cfg.env, cfg, 0)
    try:
        assert type(made.unwrapped).__name__ == env_class
        made.reset(seed=0)
    finally:
        made.close()


def test_env_kwargs_reach_the_env_and_its_vectors():
    args = parsed("--env=MiniGrid-DoorKey-5x5-v0", "--env_kwargs=max_steps=7")
    cfg = args.config()
    assert make_env(args.family, cfg.env, cfg, 0).unwrapped.max_steps == 7
    vector = make_vector_env(args.family, cfg.env, cfg, 0, 2)
    assert isinstance(vector, gym.vector.SyncVectorEnv)
    assert [env.unwrapped.max_steps for env in vector.envs] == [7, 7]


@pytest.mark.parametrize("typo, suggested", [
    ("MiniGrid-DoorKy-5x5-v0", "MiniGrid-DoorKey-5x5-v0"),
    ("VizdoomBasc-v1", "VizdoomBasic-v1"),
])
def test_typos_get_similar_ids(typo, suggested):
    with pytest.raises(UserError) as info:
        parsed(f"--env={typo}")
    assert str(info.value).startswith(f"--env={typo}: unknown environment; similar registered "
                                      f"envs: {suggested}")


@pytest.mark.parametrize("package, env, extra", [
    ("minigrid", "MiniGrid-DoorKey-5x5-v0", "minigrid"),
    ("minigrid", "BabyAI-GoToLocal-v0", "minigrid"),
    ("vizdoom", "VizdoomBasic-v1", "vizdoom"),
])
def test_a_missing_package_names_its_extra(monkeypatch, tmp_path, capsys, package, env, extra):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if it were not installed
    assert_train_names_extra(env, extra, tmp_path, capsys)
