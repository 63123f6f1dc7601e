"""Action masks (an `action_mask` observation, 1 = allowed): the maths of the masked distributions
against hand computations, masks in random warm-up actions and in the learner, and a training run
and evaluation in which no masked action is ever taken."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers.harness import collect
from helpers.training_process import finish, start

from asyncrl import enjoy, train
from asyncrl.envs.command_line import parse_args
from asyncrl.envs.spaces import action_layout
from asyncrl.envs.vector import EnvVector
from asyncrl.experiment.checkpoint import load_checkpoint
from asyncrl.model.actor_critic import ActorCritic
from asyncrl.model.distributions import make_action_distribution, mask_logits
from asyncrl.utils.errors import UserError

Discrete, MultiDiscrete, Box, Tuple = (gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                                       gym.spaces.Box, gym.spaces.Tuple)


pytestmark = pytest.mark.usefixtures("space_envs")


def test_masked_categorical_against_a_hand_computation():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[1, 0, 1, 0]])
    dist = make_action_distribution(action_layout(Discrete(4)), mask_logits(logits, mask, (4,)))
    # Over the allowed actions 0 and 2 only: p(0) = e^1 / (e^1 + e^3), p(2) = e^3 / (e^1 + e^3).
    z = math.e ** 1 + math.e ** 3
    p0, p2 = math.e / z, math.e ** 3 / z
    assert dist.log_prob(torch.tensor([0])).item() == pytest.approx(math.log(p0), abs=1e-6)
    assert dist.log_prob(torch.tensor([2])).item() == pytest.approx(math.log(p2), abs=1e-6)
    assert dist.entropy().item() == pytest.approx(-(p0 * math.log(p0) + p2 * math.log(p2)), abs=1e-6)
    assert dist.log_prob(torch.tensor([3])).item() < -1e30  # probability 0
    # The most likely action is the best allowed one, not the masked logit 4.0.
    assert dist.deterministic().tolist() == [2]
    samples = make_action_distribution(action_layout(Discrete(4)),
                                       mask_logits(logits.expand(5000, 4), mask.expand(5000, 4),
                                                   (4,))).sample()
    assert set(samples.tolist()) == {0, 2}


def test_multi_discrete_masks_per_component_and_an_empty_mask_masks_nothing():
    layout = action_layout(MultiDiscrete([3, 2]))
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5, -0.5]])
    mask = torch.tensor([[0, 1, 1, 0, 0]])  # component 1 allows nothing: it stays whole
    dist = make_action_distribution(layout, mask_logits(logits, mask, layout.categories))

    def entropy(xs):
        ps = torch.softmax(torch.tensor(xs), 0)
        return -(ps * ps.log()).sum().item()

    assert dist.entropy().item() == pytest.approx(entropy([1.0, 2.0]) + entropy([0.5, -0.5]), abs=1e-6)
    log_p = dist.log_prob(torch.tensor([[2, 1]])).item()
    assert log_p == pytest.approx(math.log(torch.softmax(torch.tensor([1.0, 2.0]), 0)[1].item())
                                  + math.log(torch.softmax(torch.tensor([0.5, -0.5]), 0)[1].item()),
                                  abs=1e-6)


def test_masks_leave_continuous_parameters_alone_and_gradients_finite():
    layout = action_layout(Tuple((Discrete(3), Box(-1, 1, (2,)))))
    params = torch.randn(4, layout.num_params, requires_grad=True)
    mask = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 1]])
    masked = mask_logits(params, mask, layout.categories)
    assert torch.equal(masked[:, 3:], params[:, 3:])
    dist = make_action_distribution(layout, masked)
    actions = dist.sample()
    assert all(mask[i, int(a)] for i, a in enumerate(actions[:, 0]))
    (dist.log_prob(actions).sum() + dist.entropy().sum()).backward()
    assert torch.isfinite(params.grad).all()
    assert (params.grad[:, :3][mask == 0] == 0).all()  # a masked logit learns nothing


def test_mask_shape_and_action_space_are_checked():
    cfg = parse_args(["--env=CartPole-v1"], scope="train", prog="test").config()
    obs = gym.spaces.Dict({"x": Box(-1, 1, (2,)), "action_mask": gym.spaces.MultiBinary(4)})
    with pytest.raises(UserError, match=r"'action_mask' is MultiBinary\(4\): it must be a Box or "
                                        r"MultiBinary with one entry per action, 5 for"):
        ActorCritic(cfg, obs, MultiDiscrete([3, 2]))
    with pytest.raises(UserError, match="masks discrete actions, but this env's action space"):
        ActorCritic(cfg, obs, Box(-1, 1, (4,)))
    with pytest.raises(UserError, match="symmetric_kl does not take action masks"):
        ActorCritic(cfg.replace(exploration_loss="symmetric_kl"), obs, Discrete(4))


def test_random_warm_up_actions_respect_the_mask(space_envs):
    layout = action_layout(MultiDiscrete([4, 3]))
    masks = np.array([[0, 1, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0]] * 500)
    actions = layout.random_actions(masks, np.random.default_rng(0))
    assert set(actions[0::2, 0]) == {1, 3} and set(actions[0::2, 1]) == {2}
    assert set(actions[1::2, 0]) == {0} and set(actions[1::2, 1]) == {0, 1, 2}  # nothing allowed
    envs = EnvVector(lambda i: space_envs.MaskedGoal(), 3, seed=0)
    envs.warm_up([5, 5, 5])  # within one episode of 8 steps
    assert [env.masked_actions for env in envs.envs] == [0, 0, 0]
    assert [env.t for env in envs.envs] == [5, 5, 5]


def masked_cfg(*argv):
    return parse_args(["--env=space_envs:MaskedGoal-v0", "--use_rnn=false", "--num_workers=2",
                       "--num_envs_per_worker=4", "--worker_num_splits=2", "--rollout=8",
                       "--batch_size=64", "--encoder_mlp_layers", "32", "--device=cpu", *argv],
                      scope="train", prog="test").config()


def test_the_learner_sees_the_masks_the_actor_saw():
    cfg = masked_cfg("--serial_mode=true")
    model = ActorCritic(cfg, *_spaces())
    batch = collect(cfg, model=model).trajectories
    masks = batch.obs["action_mask"][:-1]  # [T, B, 6], stored with the trajectories
    assert masks.gather(-1, batch.actions[..., None]).all()  # every action taken was allowed
    params, _, _ = model.forward_sequence({k: v[:-1] for k, v in batch.obs.items()}, None,
                                          batch.dones)
    dist = make_action_distribution(model.action_layout, params)
    torch.testing.assert_close(dist.log_prob(batch.actions.flatten()), batch.log_probs.flatten())


def _spaces():
    import space_envs

    return space_envs.MaskedGoal.observation_space, space_envs.MaskedGoal.action_space


@pytest.mark.slow
def test_training_and_enjoy_never_take_a_masked_action(tmp_path, capsys):
    argv = ["--env=space_envs:MaskedGoal-v0", f"--train_dir={tmp_path}", "--experiment=exp",
            "--use_rnn=false", "--num_workers=2", "--num_envs_per_worker=8", "--rollout=8",
            "--batch_size=128", "--encoder_mlp_layers", "32", "--learning_rate=0.003",
            "--device=cpu", "--seed=2", "--train_for_env_steps=12000", "--serial_mode=true"]
    assert train.main(argv) == 0
    checkpoint = max((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth"))
    stats = load_checkpoint(checkpoint)["episode_stats"]
    assert len(stats["returns"]) == 100 and set(stats["extra"]["masked_actions"]) == {0.0}
    # Chance among the allowed actions is 8/3 per episode (8/6 among all six).
    assert np.mean(stats["returns"]) > 5.0
    capsys.readouterr()
    for deterministic in ("true", "false"):
        episodes = enjoy.evaluate(["--env=space_envs:MaskedGoal-v0", f"--train_dir={tmp_path}",
                                   "--experiment=exp", "--max_num_episodes=20",
                                   f"--eval_deterministic={deterministic}"])
        assert {e.extra["masked_actions"] for e in episodes} == {0.0}
        assert np.mean([e.episode_return for e in episodes]) > 5.0


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_masked_actions_are_never_taken_by_the_parallel_runtime_on_the_gpu(tmp_path):
    """Policy workers and the learner on CUDA, the masks travelling through shared memory."""
    code, out = finish(start(tmp_path, "--env=space_envs:MaskedGoal-v0", "--use_rnn=false",
                             "--num_workers=2", "--num_envs_per_worker=8", "--rollout=8",
                             "--batch_size=128", "--encoder_mlp_layers", "32",
                             "--learning_rate=0.003", "--device=gpu", "--seed=2",
                             "--train_for_env_steps=20000", script=["-m", "asyncrl.train"]),
                       timeout=240)
    assert code == 0, out
    assert "device cuda:0" in out
    stats = load_checkpoint(max((tmp_path / "exp" / "checkpoint_p0").glob("checkpoint_*.pth")))
    assert set(stats["episode_stats"]["extra"]["masked_actions"]) == {0.0}
    assert np.mean(stats["episode_stats"]["returns"]) > 5.0
