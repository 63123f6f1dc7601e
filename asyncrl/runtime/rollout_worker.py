"""A rollout worker: owns `num_envs_per_worker` envs in `worker_num_splits` groups and steps a
group whenever its actions arrive, so one group is stepped while the others wait for inference.

Observations go straight into the trajectory slots in shared memory; messages carry only indices.
For a recurrent policy the worker also looks after the hidden states in the slots: zeroed after an
episode ends, carried from one trajectory into the next, zeros for fresh envs (start, respawn).

A worker must survive being killed at any moment without breaking the others, so it never blocks
inside a shared queue: a process killed while waiting on a process-shared condition variable can
hang every later writer of that queue (glibc). It polls its queues without blocking and sleeps
on its `wakeup` semaphore instead, which policy workers post after writing its actions.
"""

from __future__ import annotations

import logging
from queue import Empty
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import threadpoolctl
from signal_slot.signal_slot import TightLoop, Timer, signal

from asyncrl.envs.registry import find_env_family, make_env, make_vector_env
from asyncrl.envs.observations import EnvContractError
from asyncrl.envs.vector import BatchedEnvVector, EnvFailureLimit, EnvVector, EpisodeReporting
from asyncrl.runtime.buffers import TrajectoryBuffers
from asyncrl.runtime.component import Component
from asyncrl.runtime.names import request_actions_signal, rollout_worker, trajectories_ready_signal

log = logging.getLogger(__name__)

# While a split waits for free slots (the learner is behind), it retries after 1 ms, then ever
# less often up to 16 ms: under such backpressure a slot arrives only with a trained batch, and
# polling faster would take the CPU the learner needs.
SLOT_RETRY_SEC = 0.001
SLOT_RETRY_MAX_SEC = 0.016
IDLE_WAIT_SEC = 0.01
POST_WAIT_SEC = 0.01


def row_policies(cfg: Any, agents_per_env: int = 1) -> np.ndarray:
    """`[num_rows]` the policy each experience row acts for: env i's agents act for policy
    i % num_policies; with pbt_mix_policies_in_one_env, agent row r for r % num_policies (so the
    agents of one env may belong to different policies). The assignment is fixed for the run."""
    rows = np.arange(cfg.num_workers * cfg.num_envs_per_worker * agents_per_env)
    units = rows if cfg.pbt_mix_policies_in_one_env else rows // agents_per_env
    return units % cfg.num_policies


def worker_rows(cfg: Any, worker_idx: int, agents_per_env: int = 1) -> slice:
    """The rows of the trajectory buffers one worker's agents fill (one per env for single-agent
    envs)."""
    per_worker = cfg.num_envs_per_worker * agents_per_env
    return slice(worker_idx * per_worker, (worker_idx + 1) * per_worker)


def worker_env_indices(cfg: Any, worker_idx: int, split_idx: int, agents_per_env: int = 1) -> np.ndarray:
    """Global indices of the agents (one per env for single-agent envs) of one split of one worker:
    the rows of the trajectory buffers they fill."""
    per_split = cfg.num_envs_per_worker // cfg.worker_num_splits * agents_per_env
    start = worker_rows(cfg, worker_idx, agents_per_env).start + split_idx * per_split
    return np.arange(start, start + per_split)


@dataclass
class _Split:
    env_indices: np.ndarray  # global agent indices (one agent per single-agent env)
    local: np.ndarray  # rows of this worker's EnvVector
    policies: np.ndarray  # [n] the policy of each row
    policy_ids: tuple[int, ...] = ()  # the policies acting in this split
    slots: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [n]
    step: int = 0
    token: int = 0  # identifies the outstanding action request; stale replies are ignored
    replies_missing: int = 0  # policies whose actions for this step have not arrived yet
    truncations: list = field(default_factory=list)  # (policy, truncation) pairs
    new_slots: np.ndarray | None = None  # [n] taken so far for the next trajectories (-1: none yet)
    # [n, rnn_state_size] the recurrent states the next trajectories start from (None: feed-forward)
    carried_states: np.ndarray | None = None


class RolloutWorker(Component):
    def __init__(self, event_loop, cfg: Any, worker_idx: int, buffers: TrajectoryBuffers,
                 free_slots: list[Any], wakeup: Any | None, agents_per_env: int = 1):
        """`free_slots`: each policy's queue of free trajectory slots. `wakeup`: the semaphore
        policy workers post, or None when every component shares one event loop (serial mode),
        whose own wait then does the sleeping."""
        super().__init__(event_loop, rollout_worker(worker_idx).object_id, cfg)
        self.worker_idx = worker_idx
        self.agents_per_env = agents_per_env
        self.buffers = buffers
        self.free_slots = free_slots
        self.policies = row_policies(cfg, agents_per_env)  # [num_rows] of every worker
        self._first_row = worker_rows(cfg, worker_idx, agents_per_env).start
        self.wakeup = wakeup
        self.envs: EnvVector | BatchedEnvVector | None = None
        self.splits: list[_Split] = []
        self.waiting_for_slots: list[int] = []  # splits that wait for free trajectory slots
        self.slot_retry_timer: Timer | None = None
        self.slot_retry_sec = SLOT_RETRY_SEC
        self.idle_loop: TightLoop | None = None

    @signal
    def episodes_finished(self): ...

    @signal
    def fatal_error(self): ...

    def on_start(self) -> None:
        cfg = self.cfg
        if self.wakeup is not None and cfg.set_workers_cpu_affinity:  # own process only
            cores = psutil.cpu_count() or 1
            psutil.Process().cpu_affinity([self.worker_idx % cores])
        if cfg.force_envs_single_thread:
            self.thread_limits = threadpoolctl.threadpool_limits(limits=1)
        family = find_env_family(cfg.env)
        first = self.worker_idx * cfg.num_envs_per_worker
        seed = None if cfg.seed is None else cfg.seed + first
        reporting = EpisodeReporting.of(cfg)
        try:
            if cfg.batched_sampling:
                self.envs = BatchedEnvVector(
                    lambda i, n: make_vector_env(family, cfg.env, cfg, first + i, n),
                    cfg.num_envs_per_worker, cfg.worker_num_splits, seed,
                    cfg.max_consecutive_env_failures, reporting, cfg.env)
            else:
                self.envs = EnvVector(lambda i: make_env(family, cfg.env, cfg, first + i),
                                      cfg.num_envs_per_worker, seed,
                                      cfg.max_consecutive_env_failures, reporting, cfg.env)
            if cfg.decorrelate_envs_on_one_worker:
                self.envs.warm_up([i * cfg.rollout for i in range(cfg.num_envs_per_worker)])
        except (EnvFailureLimit, EnvContractError) as e:
            self._fail(e)
            return
        per_split = cfg.num_envs_per_worker // cfg.worker_num_splits * self.agents_per_env
        states = self.buffers.arrays.get("rnn_states")
        for s in range(cfg.worker_num_splits):
            env_indices = worker_env_indices(cfg, self.worker_idx, s, self.agents_per_env)
            self.splits.append(_Split(
                env_indices=env_indices, local=np.arange(s * per_split, (s + 1) * per_split),
                policies=self.policies[env_indices],
                policy_ids=tuple(int(p) for p in np.unique(self.policies[env_indices])),
                new_slots=np.full(per_split, -1),
                carried_states=None if states is None else np.zeros((per_split, states.shape[-1]),
                                                                    dtype=states.dtype)))
        self.slot_retry_timer = Timer(self.event_loop, SLOT_RETRY_SEC)
        self.slot_retry_timer.timeout.connect(self._retry_waiting_splits)
        self.slot_retry_timer.stop()
        if self.wakeup is not None:
            # Every loop iteration polls the queue without blocking, then sleeps here.
            self.idle_loop = TightLoop(self.event_loop)
            self.idle_loop.iteration.connect(self._wait_for_work)
        self.start_reporting()
        delay = cfg.decorrelate_experience_max_seconds * self.worker_idx / cfg.num_workers
        if delay > 0:
            self.start_timer = Timer(self.event_loop, delay, single_shot=True)
            self.start_timer.timeout.connect(self._begin_all)
        else:
            self._begin_all()

    def _begin_all(self) -> None:
        for s in range(len(self.splits)):
            self._begin_trajectories(s)

    def _wait_for_work(self) -> None:
        # Waits until some actions are ready without consuming the post: the message that goes
        # with it may sit behind this one in the batch being processed.
        # While a split waits for free slots, wake up soon to retry.
        timeout = self.slot_retry_sec if self.waiting_for_slots else IDLE_WAIT_SEC
        with self.timings.timeit("wait_for_slots" if self.waiting_for_slots else "wait_for_actions"):
            if self.wakeup.acquire(timeout=timeout):
                self.wakeup.release()

    def _begin_trajectories(self, s: int) -> None:
        """Takes a free slot for each env of split s and asks for its first actions; while the
        learner holds every slot (backpressure), the split waits and is retried."""
        if self.envs is None:
            return  # stopped: the envs are closed
        split = self.splits[s]
        for p in split.policy_ids:
            rows = np.flatnonzero((split.new_slots < 0) & (split.policies == p))
            if len(rows) == 0:
                continue
            try:
                taken = self.free_slots[p].get_many(block=False, max_messages_to_get=len(rows))
            except Empty:
                continue
            split.new_slots[rows[:len(taken)]] = taken
        # Recorded at once, so that a respawn returns even a partial set of slots to the pool.
        self.buffers.arrays["env_slots"][split.env_indices] = split.new_slots
        if (split.new_slots < 0).any():
            if s not in self.waiting_for_slots:
                self.waiting_for_slots.append(s)
            self.slot_retry_timer.start()
            return
        split.slots = split.new_slots.copy()
        split.new_slots[:] = -1
        split.step = 0
        self._write_obs(split, 0)
        if split.carried_states is not None:
            self.buffers.arrays["rnn_states"][split.slots, 0] = split.carried_states
        self._request(s)

    def _retry_waiting_splits(self) -> None:
        waiting, self.waiting_for_slots = self.waiting_for_slots, []
        self.slot_retry_timer.stop()
        for s in waiting:
            self._begin_trajectories(s)
        still_waiting = bool(self.waiting_for_slots)
        self.slot_retry_sec = min(2 * self.slot_retry_sec, SLOT_RETRY_MAX_SEC) if still_waiting \
            else SLOT_RETRY_SEC
        self.slot_retry_timer.set_interval(self.slot_retry_sec)

    def _write_obs(self, split: _Split, t: int) -> None:
        for k, v in self.envs.obs.items():
            self.buffers.arrays[f"obs/{k}"][split.slots, t] = v[split.local]

    def _request(self, s: int) -> None:
        split = self.splits[s]
        split.token += 1
        split.replies_missing = len(split.policy_ids)
        for p in split.policy_ids:
            self.emit(request_actions_signal(p), self.worker_idx, s, split.step, split.token)

    def on_actions_ready(self, s: int, token: int) -> None:
        if self.wakeup is not None:
            # The post that goes with this message. The policy worker posts right after sending
            # it, so it may not be there yet: a post left behind would keep every later wait
            # from sleeping (the loop would spin and take the CPU the learner needs).
            self.wakeup.acquire(timeout=POST_WAIT_SEC)
        if s >= len(self.splits) or token != self.splits[s].token:
            return  # a reply to a request of a previous incarnation of this worker
        if self.envs is None:
            return  # stopped: the envs are closed
        split = self.splits[s]
        split.replies_missing -= 1
        if split.replies_missing > 0:
            return  # the other policies of this split are still computing their actions
        cfg, arrays, t = self.cfg, self.buffers.arrays, split.step
        actions = arrays["actions"][split.slots, t]
        try:
            with self.timings.timeit("env_step"):
                result = self.envs.step(split.local, actions)
        except (EnvFailureLimit, EnvContractError) as e:
            self._fail(e)
            return
        rewards = np.clip(self.envs.rewards[split.local] * cfg.reward_scale, -cfg.reward_clip,
                          cfg.reward_clip)
        arrays["rewards"][split.slots, t] = rewards
        done = self.envs.terminated[split.local] | self.envs.truncated[split.local]
        arrays["dones"][split.slots, t] = done
        # False for a step that made no transition: a vector env's reset-only step, a step of a
        # multi-agent env's agent that is out of the game.
        arrays["valid"][split.slots, t] = self.envs.valid[split.local]
        states = arrays.get("rnn_states")  # [S, T+1, H]: the policy worker wrote step t+1's already
        if cfg.value_bootstrap and len(result.truncated_indices):
            positions = np.searchsorted(split.local, result.truncated_indices)
            for j, pos in enumerate(positions):
                slot = int(split.slots[pos])
                final_obs = {k: v[j] for k, v in result.final_obs.items()}
                # The final observation would have been met in the state after this step.
                final_state = None if states is None else states[slot, t + 1].copy()
                split.truncations.append((int(split.policies[pos]),
                                          (slot, t, final_obs, final_state)))
        if states is not None:
            # The next episode starts afresh: after an episode end, and after a reset-only step
            # of a vector env (whose state came from the last episode's final observation).
            reset = done | ~self.envs.valid[split.local]
            if reset.any():
                states[split.slots[reset], t + 1] = 0.0
        if result.episodes:
            self.episodes_finished.emit(
                [(int(self.policies[self._first_row + e.row]), e) for e in result.episodes])
        split.step = t + 1
        self._write_obs(split, split.step)
        if split.step == cfg.rollout:
            if states is not None:
                split.carried_states = states[split.slots, cfg.rollout]  # a copy
            # These slots become the learner's: a respawn must not return them to the pool (if
            # this worker dies right here, the slots are lost rather than used twice).
            arrays["env_slots"][split.env_indices] = -1
            for p in split.policy_ids:
                mine = split.slots[split.policies == p]
                self.emit(trajectories_ready_signal(p), mine.tolist(),
                          [tr for q, tr in split.truncations if q == p])
            split.truncations = []
            self._begin_trajectories(s)
        else:
            self._request(s)

    def _fail(self, error: EnvFailureLimit | EnvContractError) -> None:
        log.error("%s: %s", self.object_id, error)
        self.fatal_error.emit(f"{self.object_id}: {error}")

    def on_stop(self) -> None:
        if self.envs is not None:
            # Events queued behind the stop must not step the closed envs: an env that raises
            # is recreated, and a recreated ViZDoom env would start an engine nobody closes.
            envs, self.envs = self.envs, None
            envs.close()
        self.event_loop.stop()
