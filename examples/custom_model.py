"""Train and evaluate with your own core and decoder: register their factories, then run asyncrl's
usual entry points from this script (so that the evaluation builds the same model).

    python examples/custom_model.py --env=CartPole-v1 --use_rnn=True --experiment=cartpole_custom_model
    python examples/custom_model.py enjoy --env=CartPole-v1 --experiment=cartpole_custom_model

The core keeps a state, so the policy is recurrent: --use_rnn=True makes the learner train it on
sequences (--recurrence) from the states stored while acting. Every command-line parameter works
as with `python -m asyncrl.train` (or `asyncrl.enjoy` after `enjoy`).
"""

import sys

import torch
from torch import nn

from asyncrl import enjoy, train
from asyncrl.model.core import Core, register_core_factory
from asyncrl.model.decoders import Decoder, register_decoder_factory


class LeakyMemoryCore(Core):
    """A running average of the features, memory' = keep * memory + (1 - keep) * now with a
    learned rate keep in (0, 1) per unit, --rnn_size units. Outputs the features and the memory.
    Core.sequence runs this step over the learner's sequences, resetting the memory after dones."""

    def __init__(self, cfg, in_size):
        super().__init__()
        self.inp = nn.Linear(in_size, cfg.rnn_size)
        self.keep_logit = nn.Parameter(torch.zeros(cfg.rnn_size))
        self.state_size = cfg.rnn_size  # the memory, [N, rnn_size]
        self.out_size = 2 * cfg.rnn_size

    def forward(self, x, states):
        now = torch.tanh(self.inp(x))
        keep = torch.sigmoid(self.keep_logit)
        memory = keep * states + (1.0 - keep) * now
        return torch.cat([now, memory], dim=1), memory


class NormDecoder(Decoder):
    """LayerNorm, then one hidden layer of --decoder_mlp_layers[0] units (64 without)."""

    def __init__(self, cfg, in_size):
        super().__init__()
        width = cfg.decoder_mlp_layers[0] if cfg.decoder_mlp_layers else 64
        self.norm = nn.LayerNorm(in_size)
        self.hidden = nn.Linear(in_size, width)
        self.out_size = width

    def forward(self, x):
        return torch.relu(self.hidden(self.norm(x)))


def main(argv: list[str]) -> int:
    register_core_factory(LeakyMemoryCore)
    register_decoder_factory(NormDecoder)
    if argv[:1] == ["enjoy"]:
        return enjoy.main(argv[1:])
    return train.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
