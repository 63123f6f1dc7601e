"""Running statistics that normalize observations and returns; stored in the model's state_dict,
so checkpoints carry them."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class RunningMeanStd(nn.Module):
    """Mean and variance of a stream of `[N, *shape]` batches (Chan et al. parallel update)."""

    def __init__(self, shape: Sequence[int], eps: float = 1e-5, clip: float | None = 5.0):
        super().__init__()
        self.eps = eps
        self.clip = clip
        self.register_buffer("mean", torch.zeros(tuple(shape), dtype=torch.float64))
        self.register_buffer("var", torch.ones(tuple(shape), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(eps, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: Tensor) -> None:
        batch = batch.detach().to(torch.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: Tensor) -> Tensor:
        std = torch.sqrt(self.var + self.eps).to(x.dtype)
        y = (x - self.mean.to(x.dtype)) / std
        return y.clamp(-self.clip, self.clip) if self.clip is not None else y

    def denormalize(self, y: Tensor) -> Tensor:
        std = torch.sqrt(self.var + self.eps).to(y.dtype)
        return y * std + self.mean.to(y.dtype)
