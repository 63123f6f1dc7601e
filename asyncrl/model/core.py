"""The core between encoder and decoder. The built-in one (with `use_rnn`) is a GRU or LSTM
of `rnn_num_layers` layers; without `use_rnn` there is none (the features go to the decoder).

A core's hidden state travels through the runtime as one flat row per agent, `[N, state_size]`
(the shared trajectory slots, the messages about truncated episodes, the learner's sequences);
for the built-in core the layers' h, and for an LSTM then the layers' c, concatenated. An
all-zero state starts an episode.

Users replace the default with `register_core_factory` (see examples/custom_model.py).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from asyncrl.model.parts import checked_part
from asyncrl.utils.errors import UserError

# nn.GRU takes h [L, N, H]; nn.LSTM takes (h, c), both [L, N, H].
Hidden = Tensor | tuple[Tensor, Tensor]


class Core(nn.Module):
    """Base class of cores: subclasses set `out_size` and `state_size` (0: no state, the policy
    stays feed-forward) and implement the step, forward(). `sequence` runs the step T times;
    a subclass may replace it with something faster that gives the same."""

    out_size: int
    state_size: int

    def forward(self, x: Tensor, states: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One step: features `[N, in]`, states `[N, state_size]` (None when state_size is 0)
        -> outputs `[N, out_size]`, next states `[N, state_size]` (None when state_size is 0)."""
        raise NotImplementedError

    def sequence(self, x: Tensor, states: Tensor | None,
                 dones: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features `[T, B, in]` from initial states `[B, state_size]`; `dones` `[T, B]` (1 where
        an episode ended at that step) zero the state before the next step, as the rollout
        workers do while acting. Returns outputs `[T, B, out_size]` and the states after step
        T-1 (not reset by dones[T-1])."""
        T, B = dones.shape
        if self.state_size == 0:
            out, _ = self(x.flatten(0, 1), None)
            return out.view(T, B, -1), None
        outputs = []
        for t in range(T):
            if t > 0:
                states = states * (1.0 - dones[t - 1])[:, None]
            out, states = self(x[t], states)
            outputs.append(out)
        return torch.stack(outputs), states


class RecurrentCore(Core):
    def __init__(self, cfg: Any, in_size: int):
        super().__init__()
        self.is_lstm = cfg.rnn_type == "lstm"
        rnn_class = nn.LSTM if self.is_lstm else nn.GRU
        # Torch's own initialization of the recurrent weights, as Sample Factory keeps it.
        self.rnn = rnn_class(in_size, cfg.rnn_size, cfg.rnn_num_layers)
        self.num_layers = cfg.rnn_num_layers
        self.hidden_size = cfg.rnn_size
        self.out_size = cfg.rnn_size
        self.state_size = (2 if self.is_lstm else 1) * cfg.rnn_num_layers * cfg.rnn_size

    def _unflatten(self, states: Tensor) -> Hidden:
        """`[N, state_size]` -> what the torch module takes."""
        parts = 2 if self.is_lstm else 1
        hidden = states.view(-1, parts, self.num_layers, self.hidden_size)
        hidden = hidden.permute(1, 2, 0, 3).contiguous()  # [parts, L, N, H]
        return (hidden[0], hidden[1]) if self.is_lstm else hidden[0]

    def _flatten(self, hidden: Hidden) -> Tensor:
        """What the torch module returns -> `[N, state_size]`."""
        parts = torch.stack(hidden) if self.is_lstm else hidden[None]  # [parts, L, N, H]
        return parts.permute(2, 0, 1, 3).flatten(1)

    def forward(self, x: Tensor, states: Tensor) -> tuple[Tensor, Tensor]:
        """One step: features `[N, in]`, states `[N, state_size]` -> outputs `[N, H]`, next states."""
        out, hidden = self.rnn(x[None], self._unflatten(states))
        return out[0], self._flatten(hidden)

    def sequence(self, x: Tensor, states: Tensor, dones: Tensor) -> tuple[Tensor, Tensor]:
        """As Core.sequence (outputs `[T, B, H]`), but the torch module runs whole stretches
        between the steps where some episode ended, so a sequence without episode ends costs
        one call."""
        T = x.shape[0]
        ends = torch.nonzero(dones[:-1].any(dim=1)).flatten().tolist()
        hidden = self._unflatten(states)
        outputs = []
        start = 0
        for end in [*ends, T - 1]:
            out, hidden = self.rnn(x[start:end + 1], hidden)
            outputs.append(out)
            if end < T - 1:
                keep = (1.0 - dones[end])[None, :, None]  # [1, B, 1]
                hidden = (hidden[0] * keep, hidden[1] * keep) if self.is_lstm else hidden * keep
            start = end + 1
        return torch.cat(outputs), self._flatten(hidden)


CoreFactory = Callable[[Any, int], Core | None]


def default_core_factory(cfg: Any, in_size: int) -> Core | None:
    """The recurrent core with `use_rnn`, else none."""
    return RecurrentCore(cfg, in_size) if cfg.use_rnn else None


_core_factory: CoreFactory = default_core_factory


def register_core_factory(factory: CoreFactory) -> None:
    """Every model built after this call uses `factory(cfg, in_size)` as the core of each trunk
    (the actor's, and the critic's when they do not share weights); `in_size` is the encoder's
    out_size. The factory may return None for no core. It is called whatever `use_rnn` says, but
    a core with a state needs `use_rnn`, which makes the learner train on sequences."""
    global _core_factory
    _core_factory = factory


def make_core(cfg: Any, in_size: int) -> Core | None:
    core = _core_factory(cfg, in_size)
    if core is None:
        return None
    checked_part(core, "core", out_size=1, state_size=0)
    if not callable(getattr(core, "sequence", None)):
        raise UserError(f"a registered core must implement sequence(x, states, dones) "
                        f"({type(core).__name__} does not; subclass asyncrl.model.core.Core for "
                        "one that runs forward step by step)")
    if core.state_size > 0 and not cfg.use_rnn:
        raise UserError(f"the core {type(core).__name__} keeps a state (state_size="
                        f"{core.state_size}) but --use_rnn=False: pass --use_rnn=True so that the "
                        "learner trains it on sequences")
    return core
