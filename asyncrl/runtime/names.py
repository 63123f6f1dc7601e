"""The names of asyncrl's components, in one place: the object id a component has on its event
loop (its heartbeats and timings reports carry it, logs show it), the title its process shows in
`ps` and `top`, and the names of the signals addressed to one policy or one rollout worker.

Each component's object id and title come from one template, and the same template parses them
back, so no other code builds or takes apart these strings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Role(Enum):
    LEARNER = "learner"
    POLICY_WORKER = "policy_worker"
    ROLLOUT_WORKER = "rollout_worker"
    EVAL_WORKER = "eval_worker"


# Role -> (object id, process title); `{policy}` and `{index}` stand for the numbers.
# A title is cut to 15 characters by the kernel (utils/processes.py): keep them short.
_TEMPLATES = {
    Role.LEARNER: ("learner_p{policy}", "asyncrl-learn{policy}"),
    Role.POLICY_WORKER: ("policy_worker_p{policy}_{index}", "asyncrl-pw{policy}-{index}"),
    Role.ROLLOUT_WORKER: ("rollout_worker_{index}", "asyncrl-rw{index}"),
    Role.EVAL_WORKER: ("eval_worker", "asyncrl-eval"),
}


def _pattern(template: str) -> re.Pattern[str]:
    escaped = re.escape(template)
    for field in ("policy", "index"):
        escaped = escaped.replace(re.escape("{" + field + "}"), f"(?P<{field}>[0-9]+)")
    return re.compile(escaped)


_PATTERNS = {role: tuple(_pattern(template) for template in templates)
             for role, templates in _TEMPLATES.items()}


@dataclass(frozen=True)
class ComponentName:
    """Who a component is: its role, the policy it works for (learners, policy workers) and its
    index among its role's components of that policy (policy workers, rollout workers)."""

    role: Role
    policy: int | None = None
    index: int | None = None

    @property
    def object_id(self) -> str:
        return _TEMPLATES[self.role][0].format(policy=self.policy, index=self.index)

    @property
    def title(self) -> str:
        return _TEMPLATES[self.role][1].format(policy=self.policy, index=self.index)

    @staticmethod
    def from_object_id(object_id: str) -> ComponentName | None:
        """The component an object id names; None for any other string."""
        return _parse(object_id, 0)

    @staticmethod
    def from_title(title: str) -> ComponentName | None:
        """The component a process title names; None for any other process."""
        return _parse(title, 1)


def _parse(text: str, which: int) -> ComponentName | None:
    for role, patterns in _PATTERNS.items():
        match = patterns[which].fullmatch(text)
        if match is not None:
            numbers = {name: int(value) for name, value in match.groupdict().items()}
            return ComponentName(role, **numbers)
    return None


def learner(policy: int) -> ComponentName:
    return ComponentName(Role.LEARNER, policy=policy)


def policy_worker(policy: int, index: int) -> ComponentName:
    return ComponentName(Role.POLICY_WORKER, policy=policy, index=index)


def rollout_worker(index: int) -> ComponentName:
    return ComponentName(Role.ROLLOUT_WORKER, index=index)


EVAL_WORKER = ComponentName(Role.EVAL_WORKER)


def policy_signal(name: str, policy: int) -> str:
    """The signal `name` addressed to one policy's components (each policy has its own)."""
    return f"{name}_p{policy}"


def request_actions_signal(policy: int) -> str:
    return policy_signal("request_actions", policy)


def trajectories_ready_signal(policy: int) -> str:
    return policy_signal("trajectories_ready", policy)


def actions_ready_signal(worker: int) -> str:
    """Addressed to one rollout worker: its actions are in the slots."""
    return f"actions_ready_w{worker}"
