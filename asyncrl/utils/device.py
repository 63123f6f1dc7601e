"""--device=gpu|cpu -> a torch.device, falling back to the CPU (with one warning) without CUDA."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def resolve_device(name: str, warn: bool = True) -> torch.device:
    """warn=False for all but one of a run's processes, so that a run without CUDA warns once."""
    if name == "gpu":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if warn:
            log.warning("--device=gpu but CUDA is not available: running on the CPU")
    return torch.device("cpu")


def describe_device(name: str) -> str:
    """The device `resolve_device(name)` gives, in words for the start line: `--device=gpu`
    without CUDA must not read as a GPU run. Only asks whether CUDA is there (no CUDA context is
    made: the runner forks processes after this)."""
    if name != "gpu":
        return "cpu"
    return "cuda:0" if torch.cuda.is_available() else "cpu (no CUDA found)"
