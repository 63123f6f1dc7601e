"""Checkpoint files: crash-safe writes, safe loads, and the rotation of an experiment's checkpoints.

A checkpoint is a plain dict (state_dicts, counters, config values) stored with ``torch.save``;
what it holds, and how it is read, is checkpoint_state.py's (this module handles only files).
Layout of a checkpoint directory:

    checkpoint_{train_step:09d}_{env_steps}.pth                 regular, the newest N are kept
    best_{train_step:09d}_{env_steps}_{metric}_{value:.3f}.pth  best so far, only one is kept
    milestones/checkpoint_{train_step:09d}_{env_steps}.pth      never pruned
    eval_snapshot.pth                                           the state last evaluated during
                                                                training (--eval_every_env_steps)
"""

import logging
import os
import pickle
import re
from pathlib import Path

import torch

from asyncrl.utils.errors import UserError
from asyncrl.utils.files import fsync_dir, write_atomic

log = logging.getLogger(__name__)

_REGULAR_RE = re.compile(r"^checkpoint_(\d+)_(\d+)\.pth$")
_BEST_RE = re.compile(r"^best_(\d+)_(\d+)_.+\.pth$")
# Temp files are hidden and carry a suffix that no checkpoint pattern matches, so a write killed
# half way is never mistaken for a checkpoint and can be recognised and removed later.
_TMP_GLOB = ".*.tmp"
_MAX_REASON_CHARS = 200
_LOAD_KINDS = ("latest", "best")
EVAL_SNAPSHOT = "eval_snapshot.pth"  # matches no checkpoint pattern: never loaded as one


class CheckpointError(UserError):
    """A checkpoint file exists but cannot be used (truncated, not a checkpoint, unsafe content)."""


def save_checkpoint_atomic(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` so that a crash at any moment leaves either the previous file or
    the complete new one at ``path``, never a partial file."""
    write_atomic(path, lambda f: torch.save(state, f), binary=True)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint onto the CPU, refusing pickles that would run arbitrary code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # A damaged file surfaces as whatever the zip reader or unpickler trips over (RuntimeError,
    # EOFError, IndexError, ...); all of them mean the same thing to the user.
    except Exception as err:
        raise CheckpointError(f"cannot load checkpoint {path}: {_short_reason(err)}") from err
    if not isinstance(state, dict):
        reason = f"expected a dict, got {type(state).__name__}"
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}")
    return state


def _short_reason(err: Exception) -> str:
    """One line out of torch's multi-paragraph load errors."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip()
    if isinstance(err, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        # The line naming the refused global is the only specific part of this long message.
        detail = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), "")
        reason = "holds Python objects that weights_only loading refuses"
        return f"{reason} ({detail})"[:_MAX_REASON_CHARS] if detail else reason
    first_sentence = text.splitlines()[0].split(". ")[0] if text else ""
    kind = type(err).__name__
    detail = f"{kind}: {first_sentence}" if first_sentence else kind
    return f"not a valid checkpoint ({detail})"[:_MAX_REASON_CHARS]


def _checkpoint_name(train_step: int, env_steps: int) -> str:
    return f"checkpoint_{train_step:09d}_{env_steps}.pth"


def _sorted_by_step(paths: list[Path], pattern: re.Pattern[str]) -> list[Path]:
    """Files whose names match ``pattern``, oldest first by (train_step, env_steps) parsed from the
    name: mtimes change on copies, and names sort wrongly once train_step outgrows its padding."""
    steps = {}
    for path in paths:
        match = pattern.match(path.name)
        if match:
            steps[path] = (int(match.group(1)), int(match.group(2)))
    return sorted(steps, key=steps.__getitem__)


class CheckpointManager:
    """Saves, rotates and finds the checkpoints of one experiment directory."""

    def __init__(self, checkpoint_dir: Path, keep_checkpoints: int) -> None:
        if keep_checkpoints < 1:
            raise UserError(f"keep_checkpoints must be at least 1, got {keep_checkpoints}")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.milestone_dir = self.checkpoint_dir / "milestones"
        self.keep_checkpoints = keep_checkpoints
        # Only saving creates the folder: looking for checkpoints must not change the disk.

    def remove_stale_temp_files(self) -> None:
        """Removes temp files left by a process killed mid-write (they can be as large as a
        checkpoint). Only the run that owns the folder may call this: in another run's folder it
        would delete a write in progress."""
        for directory in (self.checkpoint_dir, self.milestone_dir):
            for tmp in directory.glob(_TMP_GLOB):
                log.info("removing stale temporary checkpoint file %s", tmp)
                tmp.unlink(missing_ok=True)

    def save(self, state: dict, train_step: int, env_steps: int) -> Path:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / _checkpoint_name(train_step, env_steps)
        save_checkpoint_atomic(state, path)
        log.debug("saved checkpoint %s", path)
        regular = self.all_checkpoints()
        for old in regular[: max(0, len(regular) - self.keep_checkpoints)]:
            log.debug("removing old checkpoint %s", old)
            old.unlink(missing_ok=True)
        return path

    def save_best(
        self, state: dict, train_step: int, env_steps: int, metric_name: str, metric_value: float
    ) -> Path:
        path = self._best_path(train_step, env_steps, metric_name, metric_value)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint_atomic(state, path)
        log.debug("saved best checkpoint %s", path)
        self._remove_best_but(path)
        return path

    def save_eval_snapshot(self, state: dict) -> Path:
        """The state an evaluation during training plays (it may become the best checkpoint)."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / EVAL_SNAPSHOT
        save_checkpoint_atomic(state, path)
        return path

    def promote_eval_snapshot(self, train_step: int, env_steps: int, metric_name: str,
                              metric_value: float) -> Path:
        """The evaluated snapshot becomes the best checkpoint (a rename: the very weights the
        evaluation played)."""
        path = self._best_path(train_step, env_steps, metric_name, metric_value)
        os.replace(self.checkpoint_dir / EVAL_SNAPSHOT, path)
        fsync_dir(self.checkpoint_dir)
        log.debug("saved best checkpoint %s", path)
        self._remove_best_but(path)
        return path

    def _best_path(self, train_step: int, env_steps: int, metric_name: str,
                   metric_value: float) -> Path:
        # The metric name goes into a file name; keep e.g. "eval/return" from naming a subdirectory.
        safe_metric = re.sub(r"[^A-Za-z0-9_.-]", "_", metric_name)
        name = f"best_{train_step:09d}_{env_steps}_{safe_metric}_{metric_value:.3f}.pth"
        return self.checkpoint_dir / name

    def _remove_best_but(self, path: Path) -> None:
        # Only once the new best is safely on disk, so one best file always exists.
        for old in self._best_files():
            if old != path:
                old.unlink(missing_ok=True)

    def save_milestone(self, state: dict, train_step: int, env_steps: int) -> Path:
        self.milestone_dir.mkdir(parents=True, exist_ok=True)
        path = self.milestone_dir / _checkpoint_name(train_step, env_steps)
        save_checkpoint_atomic(state, path)
        log.debug("saved milestone checkpoint %s", path)
        return path

    def all_checkpoints(self) -> list[Path]:
        """Regular checkpoints, oldest first."""
        return _sorted_by_step(self._files(), _REGULAR_RE)

    def _best_files(self) -> list[Path]:
        return _sorted_by_step(self._files(), _BEST_RE)

    def _files(self) -> list[Path]:
        return list(self.checkpoint_dir.iterdir()) if self.checkpoint_dir.is_dir() else []

    def latest(self) -> Path | None:
        regular = self.all_checkpoints()
        return regular[-1] if regular else None

    def best(self) -> Path | None:
        best = self._best_files()
        return best[-1] if best else None

    def load(self, kind: str) -> dict | None:
        """Load the 'latest' or 'best' checkpoint; None when the directory holds no checkpoint.

        A damaged file raises CheckpointError rather than falling back to an older checkpoint or a
        fresh start: either would silently discard training progress the user believes is saved.
        """
        if kind not in _LOAD_KINDS:
            allowed = ", ".join(_LOAD_KINDS)
            raise UserError(f"unknown checkpoint kind {kind!r}; expected one of {allowed}")
        path = self.best() if kind == "best" else None
        if path is None:
            path = self.latest()
            if kind == "best" and path is not None:
                log.warning(
                    "no best checkpoint in %s, loading the latest: %s", self.checkpoint_dir, path
                )
        if path is None:
            return None
        try:
            return load_checkpoint(path)
        except CheckpointError as err:
            raise CheckpointError(
                f"{err}; delete that file or pass --restart_behavior=restart to start over"
            ) from err
