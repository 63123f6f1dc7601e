"""The supervisor's decisions on a table of fake processes: a dead rollout worker is respawned
(after the runner got to return its slots), a hung one is killed (and respawned at the next
check), any other dead component ends the run; and how a process's end is told."""

import time

import pytest
from signal_slot.signal_slot import EventLoop

from asyncrl.runtime import names, supervisor
from asyncrl.runtime.supervisor import HEARTBEAT_TIMEOUT_FACTOR, Supervisor, exit_cause

HEARTBEAT_SEC = 1.0


class FakeProcess:
    def __init__(self, name: str, alive: bool = True, exitcode: int | None = None):
        self.name, self.alive, self.exitcode = name, alive, exitcode
        self.pid = 1
        self.starts = 0
        self.killed = False

    def start(self) -> None:
        self.starts += 1
        self.alive, self.exitcode = True, None

    def is_alive(self) -> bool:
        return self.alive

    def join(self, timeout: float | None = None) -> None:
        pass

    def kill(self) -> None:
        self.killed = True
        self.alive, self.exitcode = False, -9


@pytest.fixture
def table(monkeypatch):
    """A supervisor of a learner and two rollout workers (all alive, just heartbeating), and the
    respawns it announced."""
    # A fake has no OS process whose children could be killed.
    monkeypatch.setattr(supervisor, "kill_with_children", lambda process: process.kill())
    respawns = []
    sup = Supervisor(EventLoop("test_supervisor_evt_loop", serial_mode=True), HEARTBEAT_SEC,
                     lambda component, cause: respawns.append((component, cause)))
    processes = {}
    for component in (names.learner(0), names.rollout_worker(0), names.rollout_worker(1)):
        processes[component] = FakeProcess(component.object_id)
        sup.add(component, processes[component])
        sup.on_heartbeat(component.object_id, time.time())
    return sup, processes, respawns


def test_all_alive_and_beating_nothing_happens(table):
    sup, processes, respawns = table
    assert sup.check() is None
    assert respawns == [] and sup.restarts == 0
    assert not any(p.killed for p in processes.values())


def test_a_dead_rollout_worker_is_respawned(table):
    sup, processes, respawns = table
    worker = processes[names.rollout_worker(1)]
    worker.alive, worker.exitcode = False, -9
    before = time.time()
    assert sup.check() is None  # the run goes on
    assert respawns == [(names.rollout_worker(1), "killed by SIGKILL")]
    assert worker.starts == 1 and worker.is_alive() and sup.restarts == 1
    assert sup.last_heartbeat["rollout_worker_1"] >= before  # its start-up is not a silence
    assert processes[names.rollout_worker(0)].starts == 0


def test_a_hung_rollout_worker_is_killed_then_respawned(table):
    sup, processes, respawns = table
    silent_since = time.time() - HEARTBEAT_TIMEOUT_FACTOR * HEARTBEAT_SEC - 1
    sup.last_heartbeat["rollout_worker_0"] = silent_since
    sup.last_heartbeat["learner_p0"] = silent_since  # late, but only rollout workers are replaced
    assert sup.check() is None
    assert processes[names.rollout_worker(0)].killed and respawns == []
    assert not processes[names.learner(0)].killed and not processes[names.rollout_worker(1)].killed
    assert sup.check() is None
    assert respawns == [(names.rollout_worker(0), "killed by SIGKILL")] and sup.restarts == 1


def test_a_dead_learner_ends_the_run(table):
    sup, processes, respawns = table
    learner = processes[names.learner(0)]
    learner.alive, learner.exitcode = False, 1
    assert sup.check() == (names.learner(0), "exit code 1")
    assert learner.starts == 0 and respawns == [] and sup.restarts == 0


def test_exit_causes():
    assert exit_cause(None) == "still running"
    assert exit_cause(-15) == "killed by SIGTERM"
    assert exit_cause(3) == "exit code 3"


def test_shutdown_kills_what_does_not_stop(table):
    sup, processes, _ = table
    processes[names.rollout_worker(0)].alive = False  # stopped when asked
    sup.shutdown()
    assert [p.killed for p in processes.values()] == [True, False, True]
