"""The tuned settings in configs/*.yaml name real parameters with valid values: each file, as
command-line flags, parses without error for its env."""

from pathlib import Path

import pytest

from asyncrl.config.parser import parse_args

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def as_flags(settings: dict) -> list[str]:
    """{'encoder_mlp_layers': [64, 64], 'gamma': 0.95} -> ['--encoder_mlp_layers=64,64', '--gamma=0.95']."""
    flags = []
    for name, value in settings.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        flags.append(f"--{name}={value}")
    return flags


def test_there_are_preset_files():
    assert {"pendulum.yaml", "lunarlander.yaml", "mujoco_halfcheetah.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_preset_file_parses_as_flags(path):
    yaml = pytest.importorskip("yaml")
    settings = yaml.safe_load(path.read_text())
    assert isinstance(settings, dict) and "env" in settings
    cfg = parse_args(as_flags(settings), scope="train", prog="test").config()
    for name, value in settings.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert getattr(cfg, name) == expected, name
