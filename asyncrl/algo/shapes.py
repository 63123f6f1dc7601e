"""Shape contracts of the maths: one clear ValueError instead of silent broadcasting."""

from __future__ import annotations

from torch import Tensor


def require_same_shape(layout: str, **tensors: Tensor) -> tuple[int, ...]:
    """All `tensors` must share one shape of the rank `layout` names (e.g. "[T, B]", "[N]");
    returns that shape."""
    rank = len(layout.strip("[]").split(","))
    (first_name, first), *_ = tensors.items()
    first_shape = tuple(first.shape)
    if len(first_shape) != rank:
        raise ValueError(f"{first_name} must be {layout}, got shape {first_shape}")
    for name, t in tensors.items():
        if tuple(t.shape) != first_shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {layout} = {first_shape} "
                             f"like {first_name}")
    return first_shape
