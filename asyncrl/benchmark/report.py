"""The figures of every system, side by side: the summary (the JSON file) and the table."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from asyncrl.benchmark.figures import Result
from asyncrl.benchmark.plan import Plan


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def usable_cores() -> int:
    """The cores this process (and so the runs it starts) may run on."""
    return len(os.sched_getaffinity(0))


def report(plan: Plan, results: list[Result]) -> dict[str, Any]:
    by_system = {r.system: r for r in results}
    raw = by_system.get("raw stepping")
    ours = by_system.get("asyncrl")
    sf = next((r for r in results if r.system.startswith("Sample Factory")), None)
    limit = by_system.get("learner limit")
    raw_fps = raw.env_frames_per_sec if raw else None
    limit_fps = limit.env_frames_per_sec if limit else None
    cores = usable_cores()
    rows = []
    for r in results:
        mine = r is ours
        # The most frames/s these cores allow at the run's CPU cost per frame.
        bound = _ratio(cores * 1e6, r.cpu_us_per_frame)
        rows.append({
            **asdict(r),
            "ratio_to_raw": _ratio(r.env_frames_per_sec, raw_fps),
            "ratio_to_sample_factory": (_ratio(r.env_frames_per_sec, sf.env_frames_per_sec)
                                        if mine and sf is not None else None),
            "ratio_to_learner_limit": (_ratio(r.env_frames_per_sec, limit_fps)
                                       if mine and limit is not None else None),
            # The same ratios in the steady state (the limit has no start-up of its own).
            "after_startup_ratio_to_sample_factory": (
                _ratio(r.after_startup_frames_per_sec, sf.after_startup_frames_per_sec)
                if mine and sf is not None else None),
            "after_startup_ratio_to_learner_limit": (
                _ratio(r.after_startup_frames_per_sec, limit_fps)
                if mine and limit is not None else None),
            "cpu_bound_frames_per_sec": bound,
            "cpu_bound_ratio_to_learner_limit": (_ratio(bound, limit_fps)
                                                 if mine and limit is not None else None),
        })
    return {
        "env": plan.env, "seconds": plan.seconds, "num_workers": plan.num_workers,
        "num_envs_per_worker": plan.num_envs_per_worker, "asyncrl_args": plan.train_args,
        "target_return": plan.target_return,
        "cpu_count": os.cpu_count(), "usable_cores": cores, "date": time.strftime("%Y-%m-%d"),
        "results": {r["system"]: r for r in rows},
    }


def format_table(summary: dict[str, Any]) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def ratios(r: dict[str, Any], to: str) -> str:  # "whole run (after start-up)"
        whole, steady = r[f"ratio_to_{to}"], r[f"after_startup_ratio_to_{to}"]
        return num(whole, ".2f") if steady is None else f"{num(whole, '.2f')} ({steady:.2f})"

    target = summary.get("target_return")

    def to_target(r: dict[str, Any]) -> str:
        if r["system"] in ("raw stepping", "learner limit"):
            return "-"
        if r["seconds_to_target"] is None:
            return "not reached"
        return f"{r['seconds_to_target']:.0f} s ({r['frames_at_target']:,} frames)"

    header = ("system", "env frames/s", "after start-up", "x raw", "asyncrl/SF", "asyncrl/limit",
              "last 10 s", "lag (versions)", "lag (SGD steps)", "CPU us/frame", "peak RSS (MiB)",
              *([f"return {target:g} at"] if target is not None else []))
    body = []
    for r in summary["results"].values():
        if r["error"]:
            body.append((r["system"], "failed", "", "", "", "", "", "", "", "",
                         num(r["peak_rss_mib"], ".0f"), *([""] if target is not None else [])))
            continue
        body.append((r["system"], num(r["env_frames_per_sec"], ",.0f"),
                     num(r["after_startup_frames_per_sec"], ",.0f"),
                     num(r["ratio_to_raw"], ".2f"), ratios(r, "sample_factory"),
                     ratios(r, "learner_limit"),
                     num(r["last_10s_frames_per_sec"], ",.0f"), num(r["policy_lag_versions"], ".1f"),
                     num(r["policy_lag_sgd_steps"], ".1f"),
                     num(r["cpu_us_per_frame"], ".1f"), num(r["peak_rss_mib"], ".0f"),
                     *([to_target(r)] if target is not None else [])))
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ours = summary["results"].get("asyncrl")
    if ours and not ours["error"] and ours["cpu_us_per_frame_by_role"]:
        parts = ", ".join(f"{role} {us:.1f}" for role, us in
                          ours["cpu_us_per_frame_by_role"].items())
        bound = (f"at that cost {summary['usable_cores']} cores make at most "
                 f"{ours['cpu_bound_frames_per_sec']:,.0f} env frames/s")
        if ours["cpu_bound_ratio_to_learner_limit"] is not None:
            bound += f", {ours['cpu_bound_ratio_to_learner_limit']:.2f} of the learner limit"
        lines.append(f"asyncrl's CPU per env frame after start-up: {parts} "
                     f"({ours['cpu_us_per_frame']:.1f} us in all); {bound}")
    return "\n".join(lines)

