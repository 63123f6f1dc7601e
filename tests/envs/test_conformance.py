"""The environment conformance sweep (asyncrl/envs/conformance.py) on a part of every package of
the test extra: each id trains two rollouts or is refused in one line, never a traceback, and the
outcome is the one docs/conformance.md (the whole sweep) records."""


import gymnasium as gym
import pytest

from helpers import REPO

from asyncrl.envs import conformance

PAGE = REPO / "docs" / "conformance.md"
# ALE: every kind of id of one game, and v5 ids of games with unusual action sets.
ALE_IDS = ("ALE/Pong-v5", "Pong-v0", "Pong-v4", "PongNoFrameskip-v0", "PongNoFrameskip-v4",
           "ALE/Breakout-v5", "ALE/MontezumaRevenge-v5")
# ViZDoom: its scenarios with Discrete and with MultiBinary buttons, and one map of each game.
VIZDOOM_IDS = ("VizdoomBasic-v1", "VizdoomBasic-MultiBinary-v1", "VizdoomBasicAudio-v1",
               "VizdoomDeadlyCorridor-v1", "VizdoomDefendCenter-v1", "VizdoomHealthGathering-v1",
               "VizdoomMyWayHome-v1", "VizdoomPredictPosition-v1", "VizdoomTakeCover-v1",
               "VizdoomDeathmatch-MultiBinary-v1", "VizdoomDoomE1M1-S1-v0",
               "VizdoomFreedoom1E1M1-S1-v0", "VizdoomDoom2MAP01-S1-v0", "VizdoomFreedoom2MAP01-S1-v0")


def checked_ids() -> list[str]:
    packages = conformance.installed_packages()
    everything = conformance.env_ids(packages)
    whole = [env_id for env_id in everything
             if conformance.package_of(env_id) in ("gymnasium", "minigrid", "mpe2")]
    return whole + [env_id for env_id in (*ALE_IDS, *VIZDOOM_IDS) if env_id in gym.registry]


@pytest.mark.slow
def test_every_checked_id_trains_or_is_refused_as_the_docs_say():
    ids = checked_ids()
    assert len(ids) > 200  # the test extra's packages are installed
    outcomes = conformance.sweep(ids, jobs=2, progress=False)
    failed = [f"{o.env}: {o.detail}" for o in outcomes if o.result == "failed"]
    assert not failed, "\n".join(failed)
    recorded = conformance.read_page(PAGE)
    differ = [f"{o.env}: {o.result} here, {recorded.get(o.env, 'missing')} in {PAGE.name}"
              for o in outcomes if recorded.get(o.env) != o.result]
    assert not differ, "run: python -m asyncrl.envs.conformance --write=docs/conformance.md\n" + \
        "\n".join(differ)
    # The ids that train are most of them: refusals are for packages the extra does not bring.
    assert sum(o.result == "trains" for o in outcomes) > 0.8 * len(outcomes)


def test_the_page_is_the_markdown_of_its_outcomes():
    outcomes = [conformance.Outcome("A-v0", "gymnasium", "trains"),
                conformance.Outcome("B-v0", "gymnasium", "refused", "needs jax"),
                conformance.Outcome("MiniGrid-X-v0", "minigrid", "trains")]
    page = conformance.markdown(outcomes, "python -m asyncrl.envs.conformance", 60.0)
    assert "| gymnasium | " in page and "| 2 | 1 | 1 | 0 |" in page
    assert "- **Refused** (1): needs jax\n  <br>`B-v0`" in page


def test_read_page_gives_each_id_its_outcome(tmp_path):
    outcomes = [conformance.Outcome("A-v0", "gymnasium", "trains"),
                conformance.Outcome("B-v0", "gymnasium", "refused", "needs jax"),
                conformance.Outcome("C-v0", "gymnasium", "failed", "exit code 1")]
    page = tmp_path / "page.md"
    page.write_text(conformance.markdown(outcomes, "cmd", 1.0))
    assert conformance.read_page(page) == {"A-v0": "trains", "B-v0": "refused", "C-v0": "failed"}
