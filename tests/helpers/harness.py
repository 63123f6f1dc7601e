"""Runs the real rollout and policy workers on one event loop (as serial mode does) and captures
what they hand to the learner, so tests can check acting without a full training run."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from faster_fifo import Queue
from signal_slot.signal_slot import EventLoop, EventLoopObject

from asyncrl.algo.trajectories import Trajectories
from asyncrl.envs.registry import find_env_family
from asyncrl.envs.observations import obs_dict_space
from asyncrl.envs.vector import agents_per_env
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.runtime.buffers import SharedWeights, TrajectoryBuffers
from asyncrl.runtime.policy_worker import PolicyWorker
from asyncrl.runtime.names import (actions_ready_signal, request_actions_signal,
                                   trajectories_ready_signal)
from asyncrl.runtime.rollout_worker import RolloutWorker


class _Sink(EventLoopObject):
    """Plays the learner: keeps what arrives; with `recycle`, frees the slots at once (their data
    is then overwritten) and waits until every worker has delivered."""

    def __init__(self, loop: EventLoop, messages_wanted: int, free_slots, recycle_for: int):
        super().__init__(loop, object_id="sink")
        self.messages_wanted = messages_wanted
        self.free_slots = free_slots
        self.recycle_for = recycle_for  # number of workers to wait for; 0: no recycling
        self.slots: list[int] = []
        self.truncations: list = []
        self.episodes: list = []
        self.messages = 0
        self.first_arrival: dict[str, float] = {}  # rollout worker -> monotonic time

    def on_trajectories(self, slots, truncations):
        self.first_arrival.setdefault(self.event_loop.curr_emitter.object_id, time.monotonic())
        self.slots += slots
        self.truncations += truncations
        self.messages += 1
        if self.recycle_for:
            self.free_slots.put_many(slots)
            if len(self.first_arrival) == self.recycle_for and self.messages >= self.messages_wanted:
                self.event_loop.stop()
        elif self.messages == self.messages_wanted:
            self.event_loop.stop()

    def on_episodes(self, episodes):
        self.episodes += [episode for _, episode in episodes]  # all of policy 0


@dataclass
class Collected:
    trajectories: Trajectories  # [T, B], B = every env once per rollout
    truncations: list  # (slot, t, final obs, recurrent state) of time-limit ends
    episodes: list  # EpisodeStats
    buffers: TrajectoryBuffers
    slots: list[int]
    first_arrival: dict[str, float]  # rollout worker -> seconds from the start to its first data
    workers: list[RolloutWorker]


def collect(cfg, rollouts: int = 1, model: ActorCritic | None = None,
            policy_version: int = 0, recycle_slots: bool = False) -> Collected:
    probe = find_env_family(cfg.env).make_env(cfg.env, cfg, 0)
    obs_space, action_space = probe.observation_space, probe.action_space
    agents = agents_per_env(probe)
    probe.close()
    num_envs = cfg.num_workers * cfg.num_envs_per_worker * agents
    num_slots = num_envs * (rollouts + 1)
    model = model or ActorCritic(cfg, obs_space, action_space)
    buffers = TrajectoryBuffers(obs_dict_space(obs_space), action_space, cfg.rollout, num_slots,
                                num_envs, model.rnn_state_size)
    free_slots = Queue(1_000_000)
    free_slots.put_many(list(range(num_slots)))
    loop = EventLoop("test_loop", serial_mode=True)
    policy = PolicyWorker(loop, cfg, 0, 0, obs_space, action_space, buffers,
                          SharedWeights(model, policy_version), None, agents)
    sink = _Sink(loop, rollouts * cfg.num_workers * cfg.worker_num_splits, free_slots,
                 cfg.num_workers if recycle_slots else 0)
    loop.start.connect(policy.on_start)
    workers = []
    for w in range(cfg.num_workers):
        worker = RolloutWorker(loop, cfg, w, buffers, [free_slots], None, agents)
        loop.start.connect(worker.on_start)
        worker.connect(request_actions_signal(0), policy.on_request)
        policy.connect(actions_ready_signal(w), worker.on_actions_ready)
        worker.connect(trajectories_ready_signal(0), sink.on_trajectories)
        worker.episodes_finished.connect(sink.on_episodes)
        workers.append(worker)
    started = time.monotonic()
    loop.exec()
    for worker in workers:
        worker.envs.close()
    return Collected(trajectories=buffers.trajectories(torch.tensor(sink.slots)),
                     truncations=sink.truncations, episodes=sink.episodes, buffers=buffers,
                     slots=sink.slots, workers=workers,
                     first_arrival={k: t - started for k, t in sink.first_arrival.items()})
