"""Component names: every object id and process title parses back to the component it names,
and nothing else parses as one."""

import pytest

from asyncrl.runtime import names
from asyncrl.runtime.names import ComponentName, Role

COMPONENTS = [names.learner(0), names.learner(12), names.policy_worker(1, 3),
              names.rollout_worker(0), names.rollout_worker(47), names.EVAL_WORKER]


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.object_id)
def test_object_ids_and_titles_parse_back(component):
    assert ComponentName.from_object_id(component.object_id) == component
    assert ComponentName.from_title(component.title) == component


def test_the_names_components_have_always_had():
    """Logs, the benchmark and `ps` show these: they must not change."""
    assert [c.object_id for c in COMPONENTS] == [
        "learner_p0", "learner_p12", "policy_worker_p1_3", "rollout_worker_0",
        "rollout_worker_47", "eval_worker"]
    assert [c.title for c in COMPONENTS] == [
        "asyncrl-learn0", "asyncrl-learn12", "asyncrl-pw1-3", "asyncrl-rw0", "asyncrl-rw47",
        "asyncrl-eval"]
    assert names.request_actions_signal(2) == "request_actions_p2"
    assert names.trajectories_ready_signal(0) == "trajectories_ready_p0"
    assert names.actions_ready_signal(5) == "actions_ready_w5"
    assert names.policy_signal("save", 1) == "save_p1"


@pytest.mark.parametrize("text", ["runner", "python", "learner_p", "learner_px", "rollout_worker_1_2",
                                  "asyncrl-rw", "asyncrl-bench0", "xasyncrl-rw1", "eval_worker_0"])
def test_other_strings_name_no_component(text):
    assert ComponentName.from_object_id(text) is None
    assert ComponentName.from_title(text) is None


def test_a_title_and_an_object_id_are_not_mixed_up():
    assert ComponentName.from_title("rollout_worker_1") is None
    assert ComponentName.from_object_id("asyncrl-rw1") is None
    assert ComponentName.from_title("asyncrl-pw0-2").role is Role.POLICY_WORKER
