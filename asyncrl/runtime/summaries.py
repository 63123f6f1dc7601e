"""Scalar summaries to TensorBoard (always) and Weights & Biases (`--with_wandb`)."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

from asyncrl.utils.errors import UserError

log = logging.getLogger(__name__)


class Summaries:
    """Writes `{group/name: value}` dicts against env steps; flushes every flush interval."""

    def __init__(self, cfg: Any, experiment_dir: Path, config_dict: dict[str, Any]):
        self.flush_interval = cfg.flush_summaries_interval
        self._last_flush = time.monotonic()
        self.writer = SummaryWriter(str(experiment_dir / "summaries"), flush_secs=cfg.flush_summaries_interval)
        self.wandb = _init_wandb(cfg, experiment_dir, config_dict) if cfg.with_wandb else None

    def write(self, scalars: dict[str, float], env_steps: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, env_steps)
        if self.wandb is not None:
            self.wandb.log({**scalars, "env_steps": env_steps}, step=env_steps)
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.writer.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def _init_wandb(cfg: Any, experiment_dir: Path, config_dict: dict[str, Any]):
    try:
        import wandb
    except ImportError:
        raise UserError("--with_wandb=True needs wandb: pip install 'asyncrl[wandb]'") from None
    id_file = experiment_dir / "wandb_run_id"
    # One W&B run per experiment: a resumed experiment continues the same run.
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:16]
    id_file.write_text(run_id)
    wandb_dir = Path(cfg.wandb_dir) if cfg.wandb_dir else experiment_dir
    wandb_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(id=run_id, resume="allow", entity=cfg.wandb_user, project=cfg.wandb_project,
                      group=cfg.wandb_group or cfg.env, job_type=cfg.wandb_job_type,
                      tags=list(cfg.wandb_tags), name=cfg.experiment, dir=str(wandb_dir),
                      config=config_dict)
