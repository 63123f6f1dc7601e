"""Fixtures shared by the test folders (one folder per layer of asyncrl/; helper modules in
tests/helpers/). Tests that train, start processes, sweep packages or build the site carry the
`slow` marker: `python -m pytest -m "not slow"` is the fast lane (docs/contributing.md)."""

import pytest

from helpers import HELPERS


@pytest.fixture
def helpers_on_path(monkeypatch):
    """tests/helpers/ on sys.path, as `--env=custom_envs:Corridor-v0` and the like need."""
    monkeypatch.syspath_prepend(str(HELPERS))


@pytest.fixture
def space_envs(helpers_on_path):
    """tests/helpers/space_envs.py, imported: MixedObs-v0, MaskedGoal-v0 and the broken envs are
    registered."""
    import space_envs

    return space_envs


@pytest.fixture
def custom_envs(helpers_on_path):
    """tests/helpers/custom_envs.py, imported: Corridor-v0 is registered."""
    import custom_envs

    return custom_envs
