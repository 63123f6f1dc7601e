"""Sample Factory installed once into a cached virtual environment, with the packages of the
example that has the env (ale-py for Atari, vizdoom for doom_*)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from asyncrl.benchmark.processes import tail

SF_VERSION = "2.1.1"
# The CPU build on this machine's disk; any other version makes pip download a CUDA build.
SF_TORCH = "torch==2.13.0"
SF_ENVS = ("CartPole-v1",)  # what sf_examples.train_gym_env registers
# Sample Factory's Atari example needs ale-py; 0.9.1 is the newest that works with its gymnasium
# 0.29.1 and ships the ROMs. It registers the envs only when imported (no gymnasium plugin).
SF_ATARI_PACKAGES = ("ale-py==0.9.1", "gymnasium==0.29.1")
# Its ViZDoom example needs vizdoom (the engine, Freedoom and the maps it does not ship itself);
# 1.3.2 is the version asyncrl's doom family is measured with.
SF_DOOM_PACKAGES = ("vizdoom==1.3.2", "gymnasium==0.29.1")
# -- (d) Sample Factory -----------------------------------------------------------------------
def sf_venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "asyncrl-bench" / "sf-venv"


class SfUnavailable(Exception):
    """Sample Factory cannot be installed or run here; the message says why, in one line."""


@dataclass(frozen=True)
class SfExample:
    """One of Sample Factory's examples: the program that trains with it, and the packages it
    needs beyond Sample Factory's own (installed into the cached venv on first use, then checked
    by `check`, Python code that must print torch's version last)."""

    name: str
    module: str = ""  # run as `python -m module`; empty: through `launcher`, a script
    launcher: str = ""
    packages: tuple[str, ...] = ()
    check: str = ""


# Sample Factory's Atari example, with ale-py imported first in every process: its processes are
# spawned, and a spawned process imports the main script again (not a `-m` module's code).
_SF_ATARI_LAUNCHER = """import sys

import ale_py  # noqa: F401  registers the ALE envs with gymnasium

from sf_examples.atari.train_atari import main

if __name__ == "__main__":
    sys.exit(main())
"""
SF_GYM = SfExample("gym", module="sf_examples.train_gym_env")
SF_ATARI = SfExample(
    "atari", launcher=_SF_ATARI_LAUNCHER, packages=SF_ATARI_PACKAGES,
    check="import ale_py, cv2, gymnasium, torch; gymnasium.make('PongNoFrameskip-v4'); "
          "print(torch.__version__)")
# Its processes are spawned too, but its envs are registered in a context they inherit.
SF_DOOM = SfExample(
    "doom", module="sf_examples.vizdoom.train_vizdoom", packages=SF_DOOM_PACKAGES,
    check="import torch; from sf_examples.vizdoom.doom.doom_utils import doom_env_by_name, "
          "make_doom_env_impl; from sf_examples.vizdoom.doom.doom_params import "
          "default_doom_cfg; env = make_doom_env_impl(doom_env_by_name('doom_basic'), "
          "cfg=default_doom_cfg()); env.reset(); env.close(); print(torch.__version__)")


def ensure_sf_venv(venv: Path, example: SfExample = SF_GYM) -> Path:
    """The Python of a virtual environment with Sample Factory, created on first use, with the
    packages of `example` (added on first use)."""
    python = venv / "bin" / "python"
    marker = venv / "asyncrl-bench-ready"
    if not (marker.exists() and python.exists()):
        _install_sf(venv, python, marker)
    if example.packages and not (venv / f"asyncrl-bench-{example.name}-ready").exists():
        _install_sf_example(venv, python, example)
    return python


def _run_install_steps(steps: list[list[str]], install_log: Path) -> None:
    with open(install_log, "a") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            code = subprocess.call(step, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
            if code != 0:
                raise SfUnavailable(f"'{' '.join(step[1:])}' failed with exit code {code} "
                                    f"(see {install_log})")


def _install_sf_example(venv: Path, python: Path, example: SfExample) -> None:
    install_log = venv.parent / "sf-install.log"
    print(f"Installing {' '.join(example.packages)} into {venv} for Sample Factory's "
          f"{example.name} example (once; log in {install_log})", flush=True)
    # torch pinned again so that resolving cannot replace it.
    _run_install_steps([[str(python), "-m", "pip", "install", *example.packages, SF_TORCH]],
                       install_log)
    # In the venv's folder: vizdoom writes files into the working directory.
    check = subprocess.run([str(python), "-c", example.check], capture_output=True, text=True,
                           timeout=120, cwd=venv)
    printed = check.stdout.split()
    if check.returncode != 0 or not printed or not printed[-1].startswith("2.13.0"):
        raise SfUnavailable(f"{' '.join(example.packages)} for Sample Factory's {example.name} "
                            f"example does not work: "
                            f"{tail((check.stdout + check.stderr).splitlines())}")
    (venv / f"asyncrl-bench-{example.name}-ready").write_text(f"{' '.join(example.packages)}\n")


def _install_sf(venv: Path, python: Path, marker: Path) -> None:
    install_log = venv.parent / "sf-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"Installing Sample Factory {SF_VERSION} into {venv} (once; log in {install_log})",
          flush=True)
    steps = [
        # torch first, pinned again below so that resolving Sample Factory cannot replace it.
        [str(python), "-m", "pip", "install", SF_TORCH],
        [str(python), "-m", "pip", "install", f"sample-factory=={SF_VERSION}", SF_TORCH],
    ]
    if not python.exists():
        steps.insert(0, [sys.executable, "-m", "venv", str(venv)])
    _run_install_steps(steps, install_log)
    check = subprocess.run(
        [str(python), "-c", "import sample_factory, torch, gymnasium; "
         "print(torch.__version__, gymnasium.__version__)"],
        capture_output=True, text=True, timeout=120)
    versions = check.stdout.split()
    if check.returncode != 0 or not versions or not versions[0].startswith("2.13.0"):
        raise SfUnavailable(f"the installed Sample Factory does not import with torch 2.13.0: "
                            f"{tail((check.stdout + check.stderr).splitlines())}")
    marker.write_text(f"sample-factory {SF_VERSION}, torch {versions[0]}, "
                      f"gymnasium {versions[1]}\n")

