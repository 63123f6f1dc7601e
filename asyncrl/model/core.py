"""The recurrent core between encoder and decoder: a GRU or LSTM of `rnn_num_layers` layers.

Its hidden state travels through the runtime as one flat row per agent, `[N, state_size]` (the
shared trajectory slots, the messages about truncated episodes, the learner's sequences): the
layers' h, and for an LSTM then the layers' c, concatenated. An all-zero state starts an episode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

# nn.GRU takes h [L, N, H]; nn.LSTM takes (h, c), both [L, N, H].
Hidden = Tensor | tuple[Tensor, Tensor]


class RecurrentCore(nn.Module):
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
        """Features `[T, B, in]` from initial states `[B, state_size]`; `dones` `[T, B]` (1 where
        an episode ended at that step) zero the state before the next step, as the rollout
        workers do while acting. Returns outputs `[T, B, H]` and the states after step T-1
        (not reset by dones[T-1]).

        The torch module runs whole stretches between the steps where some episode ended, so a
        sequence without episode ends costs one call."""
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
