"""Atari 2600 games (ale-py) with the standard DeepMind preprocessing.

`--env=atari_pong` (any ALE game as snake_case or lower case: `atari_space_invaders`,
`atari_spaceinvaders`, `atari_montezuma`...) or a raw id such as `--env=ALE/Pong-v5`. An env is

    gym.make("ALE/<Game>-v5", frameskip=1, obs_type="ram")
       with repeat_action_probability=0 for atari_* names (Sample Factory's NoFrameskip-v4
       games, DeepMind's setting); ALE/...-v5 ids keep v5's sticky actions (0.25); --env_kwargs
       may set AtariEnv's other arguments (repeat_action_probability, mode, difficulty,
       full_action_space, max_num_frames_per_episode), not those the preprocessing relies on
    -> AtariFramePreprocessing: 1-30 no-ops at reset (none in the two games without NOOP,
       Backgammon and VideoCheckers), each action repeated --env_frameskip frames (reward
       summed, the grayscale screens of the last two frames max-pooled), 210x160 -> 84x84 area
       resize
    -> RecordEpisodeStatistics (--use_record_episode_statistics): the whole game's score and
       length in agent steps, in info['episode'] at the game's end
    -> EpisodicLife (--episodic_life): a life lost ends the episode, not the game
    -> FireReset: presses FIRE after reset (and after each life lost, with EpisodicLife) in
       games that need it (Breakout, Pong, ...)
    -> SignReward (--clip_reward_sign): rewards become -1, 0 or +1
    -> FrameStack(--env_framestack): the last observations, oldest first
    -> uint8 observations [framestack, 84, 84] (--pixel_format=CHW, or auto) or [84, 84,
       framestack] (--pixel_format=HWC)

gymnasium's AtariPreprocessing wrapper needs OpenCV for the resize; AtariFramePreprocessing does
the same steps with numpy only (AreaResize), so ale-py is the only
dependency (`pip install 'asyncrl[atari]'`).
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from functools import lru_cache
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker

from asyncrl.config.params import Param
from asyncrl.envs.env_kwargs import make_with_env_kwargs
from asyncrl.envs.family import FRAMESKIP_PARAMS
from asyncrl.utils.errors import UserError

PREFIX = "atari_"
_RAW_ID = re.compile(r"ALE/[A-Za-z0-9]+-v5")
INSTALL_HINT = "pip install 'asyncrl[atari]'"
SCREEN_SIZE = 84
NOOP_MAX = 30
# Sample Factory's short names that are not just the game's name in lower case.
ALIASES = {"montezuma": "montezumarevenge"}


def is_atari_name(env_name: str) -> bool:
    return env_name.startswith(PREFIX) or bool(_RAW_ID.fullmatch(env_name))


def ale_available() -> bool:
    try:
        _register_ale_envs()
    except UserError:
        return False
    return True


@lru_cache(maxsize=None)
def _register_ale_envs() -> None:
    try:
        import ale_py
    except ImportError:
        raise UserError(f"Atari envs need ale-py, which is not installed: {INSTALL_HINT}") from None
    gym.register_envs(ale_py)


@lru_cache(maxsize=None)
def _games() -> dict[str, str]:
    """Lower-case game name -> 'ALE/<Game>-v5' for every ALE game gymnasium knows."""
    _register_ale_envs()
    games = {}
    for env_id in gym.registry:
        if _RAW_ID.fullmatch(env_id):
            games[env_id[len("ALE/"):-len("-v5")].lower()] = env_id
    return games


def _short_name(env_id: str) -> str:
    game = env_id[len("ALE/"):-len("-v5")]
    return PREFIX + re.sub(r"(?<=[a-z])(?=[A-Z0-9])", "_", game).lower()


def atari_names() -> list[str]:
    """`atari_<game>` names (snake_case) of every game, for typo suggestions; none without ale-py."""
    if not ale_available():
        return []
    return sorted(_short_name(env_id) for env_id in _games().values())


def ale_env_id(env_name: str) -> str:
    """'atari_pong' or 'ALE/Pong-v5' -> 'ALE/Pong-v5'; UserError for an unknown game, or with
    the install hint when ale-py is missing."""
    _register_ale_envs()
    games = _games()
    if env_name.startswith(PREFIX):
        key = env_name[len(PREFIX):].replace("_", "").lower()
        key = ALIASES.get(key, key)
        if key in games:
            return games[key]
    elif env_name in games.values():
        return env_name
    similar = difflib.get_close_matches(env_name, atari_names() + sorted(games.values()), n=5,
                                        cutoff=0.6)
    hint = f"; similar Atari envs: {', '.join(similar)}" if similar else ""
    raise UserError(f"--env={env_name}: unknown Atari game{hint}")


def matches_atari(env_name: str) -> bool:
    """Known Atari games; without ale-py every Atari-looking name (make_env then says what to
    install)."""
    if not is_atari_name(env_name):
        return False
    if not ale_available():
        return True
    try:
        ale_env_id(env_name)
    except UserError:
        return False
    return True


def area_resize_matrix(src: int, dst: int) -> np.ndarray:
    """`[dst, src]` weights of an area (box-filter) resize along one axis: output pixel i
    averages the source interval [i * src/dst, (i+1) * src/dst), partial pixels by their overlap
    (as OpenCV's INTER_AREA does when shrinking)."""
    scale = src / dst
    weights = np.zeros((dst, src), dtype=np.float32)
    for i in range(dst):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), src)):
            weights[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
    return weights


# numpy's OpenBLAS spreads a matrix product over its threads above about 2**18 multiply-adds; an
# env shares the cores with the learner and the other workers, so each product stays below that.
_SINGLE_THREAD_MACS = 2 ** 17


class AreaResize:
    """2-D area resize of uint8 frames as small matrix products. The box filter repeats every
    src/g source pixels (g = gcd(src, dst)), so each axis multiplies blocks by one small weight
    matrix: 210x160 -> 84x84 is 42 blocks of 5 rows -> 2, then 4 blocks of 40 columns -> 21
    (33 us a Pong frame, against 74 us for gathering each output pixel's taps)."""

    def __init__(self, src_shape: tuple[int, int], size: int):
        height, width = src_shape
        row_blocks, col_blocks = math.gcd(height, size), math.gcd(width, size)
        self.row_blocks = row_blocks
        self.row_weights = area_resize_matrix(height // row_blocks, size // row_blocks)
        # [src columns of a block, dst columns of a block]
        self.col_weights = area_resize_matrix(width // col_blocks, size // col_blocks).T.copy()
        # The column step's product has size * col_blocks rows: as few equal chunks as keep it
        # on one thread.
        rows, macs_per_row = size * col_blocks, self.col_weights.size
        self.col_chunks = min(k for k in range(1, rows + 1) if rows % k == 0 and (
            rows // k * macs_per_row <= _SINGLE_THREAD_MACS or k == rows))
        self.size, self.width = size, width

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x = frame.astype(np.float32).reshape(self.row_blocks, -1, self.width)
        x = np.matmul(self.row_weights, x)  # [row_blocks, dst rows of a block, width]
        src_cols = self.col_weights.shape[0]
        x = np.matmul(x.reshape(self.col_chunks, -1, src_cols), self.col_weights)
        x = x.reshape(self.size, self.size)
        return np.rint(x, out=x).astype(np.uint8)


class AtariFramePreprocessing(gym.Wrapper):
    """DeepMind's Atari preprocessing on an ALE env made with frameskip=1: `noop_max` random
    no-ops at reset, each action repeated `frame_skip` frames (rewards summed, the grayscale
    screens of the last two frames max-pooled against flicker), and an area resize to
    `screen_size` x `screen_size` uint8. A life loss does not end the episode.

    The screens are read from the emulator here, only for the two frames that are pooled: the
    inner env is made with obs_type='ram' (128 bytes a frame) because a grayscale one would copy
    a new screen out of the emulator on every frame, a tenth of the cost of stepping Pong.

    When only gymnasium's checking wrappers stand between this one and the ALE env, the frames
    are stepped on the emulator itself (`ALEInterface.act`, as AtariEnv.step does), not through
    env.step: the same transitions and info keys, without three Python layers per frame (7% of
    a rollout worker's CPU per Pong step in a training run). A wrapper below that has to see every
    frame (RecordEpisodeStatistics, which counts an episode's length in frames) keeps env.step."""

    def __init__(self, env: gym.Env, frame_skip: int, noop_max: int = NOOP_MAX,
                 screen_size: int = SCREEN_SIZE):
        super().__init__(env)
        if noop_max and env.unwrapped.get_action_meanings()[0] != "NOOP":
            raise ValueError("no-op starts need NOOP as action 0 of the game")
        self.frame_skip = frame_skip
        self.noop_max = noop_max
        self._ale = env.unwrapped.ale
        self._action_codes = self._ale.getMinimalActionSet()  # action i -> the emulator's code
        self.steps_emulator_directly = _only_checks_below(env) and (
            env.action_space == gym.spaces.Discrete(len(self._action_codes)))
        height, width = self._ale.getScreenDims()
        self._screens = np.zeros((2, height, width), np.uint8)  # [last, second to last]
        self._resize = AreaResize((height, width), screen_size)
        self.observation_space = gym.spaces.Box(0, 255, (screen_size, screen_size), np.uint8)

    def _screen(self, index: int) -> np.ndarray:
        self._ale.getScreenGrayscale(self._screens[index])
        return self._screens[index]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1)) if self.noop_max else 0
        for _ in range(noops):
            _, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                _, info = self.env.reset()
        return self._resize(self._screen(0)), info

    def step(self, action: Any):
        ale = self._ale
        total_reward = 0.0
        pooled = False
        terminated = truncated = False
        info: dict = {}
        for t in range(self.frame_skip):
            if self.steps_emulator_directly:  # as AtariEnv.step (frameskip=1) steps a frame
                total_reward += ale.act(self._action_codes[action])
                terminated = ale.game_over(with_truncation=False)
                truncated = ale.game_truncated()
            else:
                _, reward, terminated, truncated, info = self.env.step(action)
                total_reward += float(reward)
            if terminated or truncated:
                break
            if t == self.frame_skip - 2:
                self._screen(1)
                pooled = True
        if self.steps_emulator_directly:  # AtariEnv's info
            info = {"lives": ale.lives(), "episode_frame_number": ale.getEpisodeFrameNumber(),
                    "frame_number": ale.getFrameNumber()}
        frame = self._screen(0)
        if pooled:
            frame = np.maximum(frame, self._screens[1], out=frame)
        return self._resize(frame), total_reward, terminated, truncated, info


def _only_checks_below(env: gym.Env) -> bool:
    """Whether the wrappers of `env` are only the ones gym.make adds to check its use."""
    while isinstance(env, gym.Wrapper):
        if not isinstance(env, (OrderEnforcing, PassiveEnvChecker)):
            return False
        env = env.env
    return True


class EpisodicLife(gym.Wrapper):
    """A life lost ends the episode (terminated), the game goes on: the next reset only steps
    a no-op, unless the game itself ended (DeepMind's, Sample Factory's and CleanRL's
    EpisodicLifeEnv). The learner then sees a life as worth keeping; the game's score is recorded
    below this wrapper (RecordEpisodeStatistics), which sees only whole games."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._ale = env.unwrapped.ale
        self._lives = 0
        self._game_over = True

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self._ale.lives()
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._game_over:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op ended the game: a new one
                obs, info = self.env.reset(seed=seed, options=options)
        self._game_over = False
        self._lives = self._ale.lives()
        return obs, info


class SignReward(gym.RewardWrapper):
    """Rewards clipped to their sign, -1, 0 or +1 (DeepMind's ClipRewardEnv): one scale of
    values for every game."""

    def reward(self, reward: SupportsFloat) -> float:
        return float(np.sign(reward))


class FireReset(gym.Wrapper):
    """Presses FIRE (then action 2) after every reset: games like Breakout wait for it."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class FrameStack(gym.Wrapper):
    """The last `num_frames` observations stacked `[num_frames, ...]`, oldest first; after a reset
    the first observation fills every place. This is gymnasium's FrameStackObservation (with its
    default padding_type="reset") without its generic concatenation and deep copy, which cost a
    tenth of a Pong step."""

    def __init__(self, env: gym.Env, num_frames: int):
        super().__init__(env)
        space = env.observation_space
        self._frames = np.zeros((num_frames, *space.shape), dtype=space.dtype)
        self.observation_space = gym.spaces.Box(
            np.repeat(space.low[None], num_frames, axis=0),
            np.repeat(space.high[None], num_frames, axis=0), dtype=space.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames[:] = obs
        return self._frames.copy(), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames[:-1] = self._frames[1:]
        self._frames[-1] = obs
        return self._frames.copy(), reward, terminated, truncated, info


class ChannelsLast(gym.ObservationWrapper):
    """[C, H, W] -> [H, W, C] (--pixel_format=HWC)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            np.moveaxis(space.low, 0, -1), np.moveaxis(space.high, 0, -1), dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(observation, 0, -1))


def needs_fire_reset(env: gym.Env) -> bool:
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def check_game_score_reporting(cfg: Any) -> None:
    """Life episodes and clipped rewards are what the learner should see, not what the statistics
    report: with either, the game's score must come from RecordEpisodeStatistics."""
    on = [name for name in ("episodic_life", "clip_reward_sign") if getattr(cfg, name)]
    if on and not cfg.use_record_episode_statistics:
        flags = " ".join(f"--{name}=True" for name in on)
        off = " ".join(f"--{name}=False" for name in on)
        raise UserError(f"{flags} needs --use_record_episode_statistics=True, so that episode "
                        f"returns are the game's score, not one life's changed rewards (or set "
                        f"{off})")


def make_atari_env(env_name: str, cfg: Any, env_index: int, render_mode: str | None = None
                   ) -> gym.Env:
    check_game_score_reporting(cfg)
    env_id = ale_env_id(env_name)  # raises the install hint without ale-py
    # Sample Factory's atari_* names are its NoFrameskip-v4 games (DeepMind's setting): no sticky
    # actions. A raw ALE/...-v5 id keeps v5's repeat_action_probability of 0.25.
    # --env_kwargs may change it (and mode, difficulty, full_action_space...).
    sticky = {} if _RAW_ID.fullmatch(env_name) else {"repeat_action_probability": 0.0}
    # AtariFramePreprocessing reads the grayscale screens itself, repeats each action and needs
    # discrete actions, so --env_kwargs may not change these; render_mode='rgb_array' renders the
    # color screen.
    env: gym.Env = make_with_env_kwargs(
        functools.partial(gym.make, env_id, **sticky), env_name, cfg, frameskip=1,
        obs_type="ram", continuous=False, render_mode=render_mode)
    # A few games (Backgammon, VideoCheckers) have no NOOP action: they start without no-ops.
    has_noop = env.unwrapped.get_action_meanings()[0] == "NOOP"
    env = AtariFramePreprocessing(env, frame_skip=cfg.env_frameskip,
                                  noop_max=NOOP_MAX if has_noop else 0)
    # Above the frame skipping, which then still steps the emulator directly; below the life
    # episodes and the reward clipping, so that it records the game's own score.
    if cfg.use_record_episode_statistics:
        env = gym.wrappers.RecordEpisodeStatistics(env)
    if cfg.episodic_life:
        env = EpisodicLife(env)
    if needs_fire_reset(env):
        env = FireReset(env)
    if cfg.clip_reward_sign:
        env = SignReward(env)
    env = FrameStack(env, cfg.env_framestack)
    if cfg.pixel_format == "HWC":
        env = ChannelsLast(env)
    return env


_GROUP = "atari env family (e.g. --env=atari_pong or --env=ALE/Pong-v5)"

# env_frameskip max-pools the grayscale screens of an action's last two frames here (see
# AtariFramePreprocessing).
ATARI_PARAMS: tuple[Param, ...] = (
    FRAMESKIP_PARAMS[0],
    Param("env_framestack", int, 1, "Stack this many of the last observations as the image "
          "channels", _GROUP, minimum=1),
    FRAMESKIP_PARAMS[1],
    Param("episodic_life", bool, False, "End the episode when a life is lost (the game goes on; "
          "the learner bootstraps no value across it), as DeepMind's, Sample Factory's and "
          "CleanRL's Atari setups do. Needs use_record_episode_statistics, so that the "
          "statistics report whole games", _GROUP),
    Param("clip_reward_sign", bool, False, "Give the learner each reward's sign (-1, 0 or +1) "
          "instead of the reward, as DeepMind's, Sample Factory's and CleanRL's Atari setups "
          "do; the statistics keep the game's score (needs use_record_episode_statistics)",
          _GROUP),
)

# Tuned for wall-clock time on a machine with 2 CPU cores and no GPU, where the learner's
# convolutions are the bottleneck (docs/atari.md explains each choice). It is not Sample Factory's
# Atari preset (sf_examples/atari/atari_params.py; configs/atari_sf_gpu.yaml is that one), which
# differs in: convnet_atari (here IMPALA's shallow net: 1.6x the learner's samples/s on this
# CPU); 8 workers x 1 env (here 2 x 16); rollouts of 128 and 4 epochs of 4 minibatches of 256
# (here rollouts of 64 and 1 epoch of 16 minibatches of 64: the same samples/s with 4x the
# updates, and 4 epochs cut the frames/s about 4x); learning rate 2.5e-4 decaying linearly (here
# 5e-4, constant); normalize_input and normalize_returns True (here False); async_rl False (here
# the table's True); train_for_env_steps 10M (here the table's). The rest (frame skip and stack,
# life episodes, sign rewards and the game's score in the statistics, gamma, clip ratio, loss
# coefficients, Adam's eps, gradient norm, one split per worker) is the same.
ATARI_DEFAULTS: dict[str, Any] = {
    "env_frameskip": 4,
    "env_framestack": 4,
    "episodic_life": True,
    "clip_reward_sign": True,
    "use_record_episode_statistics": True,  # the game's score, not one life's sign rewards
    "encoder_conv_architecture": "convnet_impala",
    "encoder_conv_mlp_layers": [512],
    "use_rnn": False,  # as in Sample Factory's Atari preset
    "nonlinearity": "relu",
    "obs_subtract_mean": 0.0,
    "obs_scale": 255.0,
    "normalize_input": False,
    "normalize_returns": False,
    "gamma": 0.99,
    "exploration_loss_coeff": 0.01,
    "rollout": 64,
    "batch_size": 64,
    "num_batches_per_epoch": 16,
    "num_epochs": 1,
    "learning_rate": 5e-4,
    "adam_eps": 1e-5,
    "max_grad_norm": 0.5,
    "ppo_clip_ratio": 0.1,
    "value_loss_coeff": 0.5,
    "num_workers": 2,
    "num_envs_per_worker": 16,
    "worker_num_splits": 1,
    "experiment_summaries_interval": 3,
}
