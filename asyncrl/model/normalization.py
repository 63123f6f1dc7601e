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
    def update(self, batch: Tensor, subtract: float = 0.0, scale: float = 1.0) -> None:
        """Adds the statistics of `(batch - subtract) / scale`. The batch's own statistics are
        taken in its precision (float32 for integer batches such as 8-bit images, where float64
        would double the learner's cost of an image batch), then merged in float64."""
        n = batch.shape[0]
        if n == 0:
            return
        batch = batch.detach()
        batch = batch if batch.is_floating_point() else batch.float()
        batch_mean = batch.mean(dim=0)
        # Two passes: several times faster than torch.var_mean over dim 0 on a CPU.
        batch_var = torch.square(batch - batch_mean).mean(dim=0)
        batch_mean = (batch_mean.double() - subtract) / scale
        batch_var = batch_var.double() / scale**2
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * (n / total)
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: Tensor, subtract: float = 0.0, scale: float = 1.0) -> Tensor:
        """`((x - subtract) / scale - mean) / std`, clipped, as one multiply-add per element of
        `x` (its coefficients are computed per feature in float64)."""
        inv_std = torch.rsqrt(self.var + self.eps)
        multiplier = inv_std / scale
        shift = -(subtract / scale + self.mean) * inv_std
        y = torch.addcmul(shift.to(x.dtype), x, multiplier.to(x.dtype))
        return y.clamp_(-self.clip, self.clip) if self.clip is not None else y

    def denormalize(self, y: Tensor) -> Tensor:
        std = torch.sqrt(self.var + self.eps).to(y.dtype)
        return y * std + self.mean.to(y.dtype)
