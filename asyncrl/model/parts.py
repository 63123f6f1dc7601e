"""The contract every encoder, core and decoder meets, built-in or from a registered factory:
a torch module (so that its weights are trained and saved) with integer sizes the model wires
the next part and the runtime's buffers with."""

from __future__ import annotations

from typing import TypeVar

from torch import nn

from asyncrl.utils.errors import UserError


Part = TypeVar("Part")


def checked_part(part: Part, what: str, **minimums: int) -> Part:
    """`part` if it is an nn.Module whose attributes `minimums` name are integers of at least
    that value; else a UserError naming the attribute (`what`: "encoder", "core"...)."""
    if not isinstance(part, nn.Module):
        raise UserError(f"a registered {what} factory must return a torch.nn.Module, "
                        f"not {type(part).__name__}")
    for name, minimum in minimums.items():
        value = getattr(part, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise UserError(f"a registered {what} must set an integer attribute {name} >= "
                            f"{minimum} ({type(part).__name__}.{name} is {value!r})")
    return part
