"""Sweeps of experiments on local processes, a Ray cluster or Slurm: `python -m asyncrl.launch`."""

from asyncrl.launcher.sweep import Sweep

__all__ = ["Sweep"]
