"""(a) Raw stepping: worker processes stepping their envs with random actions, nothing else."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import psutil

from asyncrl.benchmark.figures import Result
from asyncrl.benchmark.plan import Plan
from asyncrl.benchmark.processes import START_ALLOWANCE_SEC, TreeUsage, cpu_seconds_between
from asyncrl.envs.registry import env_frames_per_step, find_env_family, make_vector_env
from asyncrl.utils.processes import prepare_child_process


def action_sampler(space: Any, num_envs: int, rng: np.random.Generator) -> Callable[[], list]:
    """Random actions for all `num_envs` envs at once, drawn by numpy in one call per step."""
    if isinstance(space, gym.spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n)
        return lambda: rng.integers(low, high, size=num_envs).tolist()
    if isinstance(space, gym.spaces.MultiDiscrete):
        low, high = space.start, space.start + space.nvec
        return lambda: list(rng.integers(low, high, size=(num_envs, *space.shape),
                                         dtype=space.dtype))
    if isinstance(space, gym.spaces.MultiBinary):
        return lambda: list(rng.integers(0, 2, size=(num_envs, *space.shape), dtype=space.dtype))
    if isinstance(space, gym.spaces.Box):
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
            return lambda: list(rng.uniform(low, high, size=(num_envs, *space.shape))
                                .astype(space.dtype))
        return lambda: list(np.clip(rng.standard_normal((num_envs, *space.shape)), low, high)
                            .astype(space.dtype))
    return lambda: [space.sample() for _ in range(num_envs)]  # any other space, env by env


def _raw_worker(index: int, plan: Plan, messages: Any, go: Any, stop: Any) -> None:
    prepare_child_process(f"asyncrl-bench{index}")
    try:
        family = find_env_family(plan.env)
        n = plan.num_envs_per_worker
        if plan.cfg.batched_sampling:  # one vector env of all n, as a batched rollout worker has
            vector = make_vector_env(family, plan.env, plan.cfg, index * n, n)
            vector.reset()
            sample = action_sampler(vector.single_action_space, n, np.random.default_rng())
            envs = [vector]

            def step_all() -> None:
                vector.step(np.asarray(sample()))
        else:
            envs = [family.make_env(plan.env, plan.cfg, index * n + i) for i in range(n)]
            for env in envs:
                env.reset()
            sample = action_sampler(envs[0].action_space, n, np.random.default_rng())

            def step_all() -> None:
                for env, action in zip(envs, sample()):
                    _, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        env.reset()
        frames = n * env_frames_per_step(plan.cfg)  # counted as asyncrl.train counts env steps
        messages.put(("ready", index, None))
        go.wait()
        steps = 0
        start = time.monotonic()
        deadline = start + plan.seconds
        while not stop.value and time.monotonic() < deadline:
            step_all()
            steps += frames
        elapsed = time.monotonic() - start
        for env in envs:
            env.close()
        messages.put(("done", index, (steps, elapsed)))
    except Exception as e:
        messages.put(("error", index, f"{type(e).__name__}: {e}"))
        raise


def run_raw(plan: Plan) -> Result:
    """Raw stepping in `num_workers` processes; they start stepping together once all are ready."""
    ctx = mp.get_context("fork")
    messages, go, stop = ctx.SimpleQueue(), ctx.Event(), ctx.RawValue("b", 0)
    processes = [ctx.Process(target=_raw_worker, args=(i, plan, messages, go, stop),
                             name=f"raw_worker_{i}", daemon=True)
                 for i in range(plan.num_workers)]
    ready: set[int] = set()
    done: dict[int, tuple[int, float]] = {}
    usage = TreeUsage()
    stepping: list[float] = []  # when the workers were told to start and when the last ended
    deadline = time.monotonic() + plan.seconds + START_ALLOWANCE_SEC

    def drain() -> None:
        while not messages.empty():
            kind, index, payload = messages.get()
            if kind == "error":
                raise RuntimeError(f"raw stepping worker {index} failed: {payload}")
            if kind == "ready":
                ready.add(index)
            else:
                done[index] = payload

    try:
        for p in processes:
            p.start()
        watched = [psutil.Process(p.pid) for p in processes]
        while len(done) < len(processes):
            drain()
            if len(ready) == len(processes) and not go.is_set():
                # and the processes their envs started (ViZDoom's engines), which step the games
                watched += [child for worker in list(watched)
                            for child in worker.children(recursive=True)]
                stepping.append(time.monotonic())
                usage.poll(watched)  # the CPU time of start-up is not stepping's
                go.set()
            for i, p in enumerate(processes):
                if not p.is_alive() and i not in done:
                    drain()  # its last message may have come in since
                    if i not in done:
                        raise RuntimeError(f"raw stepping worker {i} exited with code "
                                           f"{p.exitcode} before reporting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw stepping did not finish within "
                                   f"{plan.seconds + START_ALLOWANCE_SEC:.0f} s")
            if usage.due() or len(done) == len(processes):
                usage.poll(watched)
            time.sleep(0.05)
        stepping.append(time.monotonic())
    finally:
        stop.value = 1
        go.set()  # workers still waiting to start see the stop flag at once
        for p in processes:
            if p.pid is not None:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)
    steps = sum(s for s, _ in done.values())
    result = Result(system="raw stepping",
                    env_frames_per_sec=sum(s / max(t, 1e-9) for s, t in done.values()),
                    env_steps=steps, seconds=max(t for _, t in done.values()),
                    peak_rss_mib=usage.peak_mib())
    # CPU time per frame while stepping (the workers' threads, e.g. EnvPool's, and the processes
    # their envs started included)
    used = cpu_seconds_between(usage.cpu_samples, *stepping)
    if used is not None and steps:
        result.cpu_us_per_frame = sum(used[1].values()) / steps * 1e6
    return result

