"""Train and evaluate with your own encoder: register a factory, then run asyncrl's usual entry
points from this script (so that the evaluation builds the same model).

    python examples/custom_encoder.py --env=CartPole-v1 --experiment=cartpole_custom_encoder
    python examples/custom_encoder.py enjoy --env=CartPole-v1 --experiment=cartpole_custom_encoder

Every command-line parameter works as with `python -m asyncrl.train` (or `asyncrl.enjoy` after
`enjoy`).
"""

import sys

import torch
from torch import nn

from asyncrl import enjoy, train
from asyncrl.model.encoders import Encoder, register_encoder_factory


class ResidualMlpEncoder(Encoder):
    """One hidden layer with a residual connection, sized by --encoder_mlp_layers[0]."""

    def __init__(self, cfg, obs_space):
        super().__init__()
        in_size = sum(int(torch.tensor(space.shape).prod()) for space in obs_space.spaces.values())
        width = cfg.encoder_mlp_layers[0] if cfg.encoder_mlp_layers else 64
        self.inp = nn.Linear(in_size, width)
        self.hidden = nn.Linear(width, width)
        self.out_size = width

    def forward(self, obs):
        x = torch.cat([v.flatten(start_dim=1) for _, v in sorted(obs.items())], dim=1)
        h = torch.relu(self.inp(x))
        return h + torch.relu(self.hidden(h))


def main(argv: list[str]) -> int:
    register_encoder_factory(ResidualMlpEncoder)
    if argv[:1] == ["enjoy"]:
        return enjoy.main(argv[1:])
    return train.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
