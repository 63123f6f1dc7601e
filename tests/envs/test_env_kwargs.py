"""`--env_kwargs`: both spellings, one-line errors for bad input, the kwargs reaching the env's
constructor, families that take none refusing them, YAML mappings in presets, config.json."""

import json

import pytest

from asyncrl import train
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.env_kwargs import parse_env_kwargs
from asyncrl.envs.registry import make_env, make_vector_env
from asyncrl.utils.errors import UserError


def parsed(*argv: str):
    return parse_args(list(argv), scope="train", prog="test")


@pytest.mark.parametrize("text, kwargs", [
    ("is_slippery=False,map_name=8x8", {"is_slippery": False, "map_name": "8x8"}),
    ("a=true, b=None ,c=1e3,d=-2,e=\"x,y\"", {"a": True, "b": None, "c": 1000.0, "d": -2,
                                             "e": "x,y"}),
    ("sizes=[1,2],name=a b", {"sizes": [1, 2], "name": "a b"}),  # commas inside a JSON value
    ("eq=a=b", {"eq": "a=b"}),
    ("msg=hello, world", {"msg": "hello, world"}),  # a comma not followed by name= is text
    ('{"is_slippery": false, "desc": ["SF", "HG"]}', {"is_slippery": False, "desc": ["SF", "HG"]}),
    (' {}', {}),
])
def test_both_forms_parse(text, kwargs):
    assert parse_env_kwargs(text) == kwargs


@pytest.mark.parametrize("text, problem", [
    ("is_slippery", "'is_slippery' is not key=value"),
    (",a=1", "'' is not key=value"),
    ("=1", "'=1' is not key=value"),
    ("a=1,a=2", "a is given twice"),
    ("my-key=1", "'my-key' is not a keyword argument name"),
    ('{"is_slippery": false', "not a valid JSON object"),
    ('{"a": 1} {"b": 2}', "not a valid JSON object"),
    ('{"not a name": 1}', "'not a name' is not a keyword argument name"),
])
def test_bad_input_is_one_line_naming_both_forms(text, problem):
    with pytest.raises(UserError) as info:
        parse_env_kwargs(text)
    message = str(info.value)
    assert message.startswith(f"--env_kwargs={text}: {problem}")
    assert "; give key=value,key=value" in message and "or a JSON object" in message
    assert "\n" not in message


def test_malformed_value_is_refused_at_config_time():
    with pytest.raises(UserError, match=r"^--env_kwargs=oops: 'oops' is not key=value"):
        parsed("--env=FrozenLake-v1", "--env_kwargs=oops").config()


@pytest.mark.parametrize("kwargs", ["is_slippery=False", '{"is_slippery": false}'])
def test_kwargs_reach_gymnasium_make(kwargs):
    args = parsed("--env=FrozenLake-v1", f"--env_kwargs={kwargs}")
    cfg = args.config()
    env = make_env(args.family, cfg.env, cfg, 0)
    # FrozenLake keeps no is_slippery attribute: a slippery lake has three outcomes per move.
    assert all(len(moves) == 1 for state in env.unwrapped.P.values() for moves in state.values())
    vector = make_vector_env(args.family, cfg.env, cfg, 0, 2)
    assert all(len(m) == 1 for e in vector.envs for s in e.unwrapped.P.values() for m in s.values())
    default = parsed("--env=FrozenLake-v1").config()
    assert len(make_env(args.family, default.env, default, 0).unwrapped.P[0][0]) == 3


def test_a_kwarg_the_env_does_not_take_is_one_line():
    args = parsed("--env=FrozenLake-v1", "--env_kwargs=is_slippery=False,foo=1")
    with pytest.raises(UserError) as info:
        make_env(args.family, "FrozenLake-v1", args.config(), 0)
    message = str(info.value)
    assert message.startswith("--env_kwargs: FrozenLake-v1 does not accept foo=1 (TypeError: ")
    assert "unexpected keyword argument 'foo'" in message and "\n" not in message


def test_a_keyword_asyncrl_sets_itself_is_refused():
    args = parsed("--env=FrozenLake-v1", "--env_kwargs=render_mode=human")
    with pytest.raises(UserError, match="^--env_kwargs: --env=FrozenLake-v1 sets render_mode "
                                        "itself"):
        make_env(args.family, "FrozenLake-v1", args.config(), 0)


@pytest.mark.parametrize("env", ["rendezvous", "memory_cue"])
def test_families_without_kwargs_refuse_them(env):
    with pytest.raises(UserError) as info:
        parsed(f"--env={env}", "--env_kwargs=length=5").config()
    assert str(info.value) == (f"--env_kwargs: --env={env} (env family {env}) takes no "
                               f"constructor keyword arguments; leave --env_kwargs out (or None)")


def test_a_preset_takes_a_yaml_mapping(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text("env: FrozenLake-v1\nenv_kwargs:\n  is_slippery: false\n  map_name: 8x8\n")
    cfg = parsed(f"--config={path}").config()
    assert json.loads(cfg.env_kwargs) == {"is_slippery": False, "map_name": "8x8"}
    path.write_text("env: FrozenLake-v1\nenv_kwargs:\n  when: 2024-01-01\n")
    with pytest.raises(UserError, match=f"^{path}: --env_kwargs must map names to JSON values"):
        parsed(f"--config={path}")


def test_config_json_stores_the_text_as_given(tmp_path):
    text = "sutton_barto_reward=True"
    assert train.main(["--env=CartPole-v1", f"--env_kwargs={text}", f"--train_dir={tmp_path}",
                       "--experiment=exp", "--serial_mode=true", "--num_workers=1",
                       "--num_envs_per_worker=4", "--worker_num_splits=1", "--rollout=16",
                       "--batch_size=64", "--num_batches_per_epoch=1", "--encoder_mlp_layers",
                       "16", "--train_for_env_steps=128"]) == 0
    stored = json.loads((tmp_path / "exp" / "config.json").read_text())["params"]
    assert stored["env_kwargs"] == text
