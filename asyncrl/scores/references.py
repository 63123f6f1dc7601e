"""The scores suites and their published references, read from references.yaml (beside this
file): which envs a suite trains, with which preset, for how many agent steps, and the values
each source published for them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REFERENCES_FILE = Path(__file__).with_name("references.yaml")
# Presets are named relative to the repository root, like the configs/ folder they live in.
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Source:
    key: str
    name: str
    url: str
    measure: str  # what its values are: training or evaluation returns, how many seeds


@dataclass(frozen=True)
class Reference:
    source: Source
    env_id: str  # as the source names the env (it may be an older version)
    value: float
    agent_steps: int
    std: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class EnvEntry:
    env: str
    config: str  # a preset file, relative to the repository root
    args: tuple[str, ...]  # more asyncrl.train parameters
    agent_steps: int
    references: tuple[Reference, ...]

    @property
    def config_path(self) -> Path:
        return REPO_ROOT / self.config


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    eval_deterministic: bool
    eval_episodes: int
    envs: tuple[EnvEntry, ...]

    def env(self, name: str) -> EnvEntry | None:
        return next((e for e in self.envs if e.env == name), None)


def load_suites(path: Path = REFERENCES_FILE) -> dict[str, Suite]:
    """Every suite of the file; a ValueError naming the entry for a malformed one (the file is
    part of asyncrl: a mistake in it is asyncrl's, not the user's)."""
    data = yaml.safe_load(path.read_text())
    sources = {key: Source(key, s["name"], s["url"], s["measure"])
               for key, s in data["sources"].items()}
    suites = {}
    for name, s in data["suites"].items():
        envs = tuple(_env_entry(env, e, sources, f"{path}: suites.{name}.envs.{env}")
                     for env, e in s["envs"].items())
        suites[name] = Suite(name, s["description"], bool(s["eval_deterministic"]),
                             int(s["eval_episodes"]), envs)
    return suites


def _env_entry(env: str, entry: dict[str, Any], sources: dict[str, Source], where: str) -> EnvEntry:
    references = []
    for r in entry.get("references") or ():
        if r.get("source") not in sources:
            raise ValueError(f"{where}: reference source {r.get('source')!r} is not one of the "
                             f"file's sources ({', '.join(sources)})")
        references.append(Reference(sources[r["source"]], r["env_id"], float(r["value"]),
                                    int(r["agent_steps"]),
                                    None if r.get("std") is None else float(r["std"]),
                                    r.get("note")))
    steps = int(entry["agent_steps"])
    if steps < 1:
        raise ValueError(f"{where}: agent_steps must be >= 1, got {steps}")
    return EnvEntry(env, entry["config"], tuple(entry.get("args") or ()), steps, tuple(references))
