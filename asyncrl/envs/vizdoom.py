"""Sample Factory's ViZDoom envs (`--env=doom_basic`, `doom_defend_the_center`,
`doom_health_gathering_supreme`, ...) on the scenarios that ship with the vizdoom package
(`pip install 'asyncrl[vizdoom]'`), so that its commands and returns carry over.

A scenario here has Sample Factory's name and means what it means there:

- the game is set up as Sample Factory's .cfg file of the scenario sets it up (buttons, rewards,
  skill, start time, timeout, HUD and weapon shown or not), on the .wad of vizdoom's own copy;
- the action space is its Discrete or Tuple of Discretes: each part picks one of its buttons or
  none (part value 0);
- each action is repeated for --env_frameskip tics (4 in the preset), the rewards summed;
- the screen is rendered at 160x120 and resized (nearest neighbour, as Sample Factory's
  ResizeWrapper does) to uint8 images of 72x128x3 (HWC, or 3x72x128 with --pixel_format=CHW);
- rewards are multiplied by the scenario's scale (doom_basic 0.01: a kill is about +1), and the
  gathering scenarios add Sample Factory's shaping, +1 for each step in which health rises;
  `scenario_return` then reports the scenario's own (unshaped) return, which Sample Factory
  reports as its true_objective;
- an episode that ends at the scenario's timeout is truncated, any other end terminated;
- each finished episode reports the scenario's statistics (kills, health, deaths...) in
  info["episode_extra_stats"].

Sample Factory's envs whose maps come only with Sample Factory (two_colors, battle, the
deathmatch maps) or that are matches of several players are refused with a one-line reason
(UNAVAILABLE).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from asyncrl.envs.family import missing_extra_message
from asyncrl.utils.errors import UserError

EXTRA = "vizdoom"
RENDER_WIDTH, RENDER_HEIGHT = 160, 120  # the engine renders this (Sample Factory's 160x120)
WIDTH, HEIGHT = 128, 72  # observations (Sample Factory's --res_w, --res_h)
TICRATE = 35  # the engine's tics per second of game time

Discrete, Tuple = gym.spaces.Discrete, gym.spaces.Tuple

# What Sample Factory's .cfg files set in every scenario: no crosshair, decals or particles, no
# window, one player.
_COMMON_SETTINGS: dict[str, Any] = {
    "render_crosshair": False,
    "render_decals": False,
    "render_particles": False,
    "window_visible": False,
    "mode": "PLAYER",
}


@dataclass(frozen=True)
class DoomScenario:
    """One of Sample Factory's doom_* envs.

    `buttons` are the game's buttons in the order of the action space's parts: a Discrete(n)
    part covers the next n - 1 buttons (value k presses the k-th of them, 0 none). `settings` are
    the other values of Sample Factory's .cfg file, as vizdoom's set_config takes them. `stats`
    names the game variables each finished episode reports (statistic name -> GameVariable), read
    after its last step; `reports_death` adds `deaths` (1 when the player died)."""

    name: str
    wad: str  # a map of vizdoom's scenarios folder
    buttons: tuple[str, ...]
    action_space: gym.Space
    settings: Mapping[str, Any]
    reward_scale: float = 1.0
    gathering_shaping: bool = False
    stats: Mapping[str, str] = field(default_factory=dict)
    reports_death: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        parts = self.action_space.spaces if isinstance(self.action_space, Tuple) else (
            self.action_space,)
        if sum(int(part.n) - 1 for part in parts) != len(self.buttons):
            raise ValueError(f"{self.name}: the action space does not cover its buttons")


_TURN_MOVE = Tuple((Discrete(3), Discrete(3)))  # (none, turn left, turn right), (none, fwd, back)
_TURN_ATTACK = Tuple((Discrete(3), Discrete(2)))  # (none, turn left, turn right), (none, attack)
_TURN_MOVE_BUTTONS = ("TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD", "MOVE_BACKWARD")
_TURN_ATTACK_BUTTONS = ("TURN_LEFT", "TURN_RIGHT", "ATTACK")
_GATHERING = {"living_reward": 0.01, "death_penalty": 0.0, "render_hud": False,
              "render_weapon": False, "episode_timeout": 2100,
              "available_game_variables": ["HEALTH"]}
_DEFEND = {"death_penalty": 1.0, "render_hud": True, "render_weapon": True,
           "episode_start_time": 10, "doom_skill": 3,
           "available_game_variables": ["AMMO2", "HEALTH"]}
_MY_WAY_HOME = {"living_reward": -0.0001, "render_hud": False, "render_weapon": True,
                "episode_start_time": 10, "episode_timeout": 2100, "doom_skill": 5,
                "available_game_variables": ["AMMO0"]}
_FIGHT_STATS = {"kills": "KILLCOUNT", "health": "HEALTH", "ammo": "AMMO2"}

SCENARIOS: dict[str, DoomScenario] = {s.name: s for s in (
    DoomScenario(
        "doom_basic", "basic.wad", ("MOVE_LEFT", "MOVE_RIGHT", "ATTACK"), Discrete(4),
        {"doom_map": "map01", "living_reward": -1.0, "render_hud": True, "render_weapon": True,
         "episode_start_time": 14, "episode_timeout": 300, "doom_skill": 5,
         "available_game_variables": ["AMMO2", "POSITION_X", "POSITION_Y", "ANGLE"]},
        reward_scale=0.01, stats={"kills": "KILLCOUNT", "ammo": "AMMO2"}, reports_death=False,
        description="shoot the monster across the room: +101 for the kill, -5 a missed shot, -1 "
                    "a tic, scaled by 0.01 (a quick kill is about +0.8)"),
    DoomScenario(
        "doom_defend_the_center", "defend_the_center.wad", _TURN_ATTACK_BUTTONS, _TURN_ATTACK,
        {**_DEFEND, "episode_timeout": 2100}, stats=_FIGHT_STATS,
        description="turn and shoot the monsters that close in on you: +1 a kill, -1 for dying"),
    DoomScenario(
        "doom_defend_the_center_flat_actions", "defend_the_center.wad", _TURN_ATTACK_BUTTONS,
        Discrete(4), {**_DEFEND, "episode_timeout": 2100}, stats=_FIGHT_STATS,
        description="doom_defend_the_center with one button at a time"),
    DoomScenario(
        "doom_defend_the_line", "defend_the_line.wad", _TURN_ATTACK_BUTTONS, _TURN_ATTACK,
        _DEFEND, stats=_FIGHT_STATS,
        description="hold the line against monsters that respawn: +1 a kill, -1 for dying; no "
                    "timeout"),
    DoomScenario(
        "doom_health_gathering", "health_gathering.wad", _TURN_MOVE_BUTTONS, Discrete(5),
        _GATHERING, gathering_shaping=True, stats={"health": "HEALTH"},
        description="stay alive on an acid floor by picking up medkits: +0.01 a tic alive, +1 "
                    "a step in which health rises (shaping)"),
    DoomScenario(
        "doom_health_gathering_supreme", "health_gathering_supreme.wad", _TURN_MOVE_BUTTONS,
        Discrete(5), _GATHERING, gathering_shaping=True, stats={"health": "HEALTH"},
        description="doom_health_gathering in a maze with fewer medkits and poison vials"),
    DoomScenario(
        "doom_my_way_home", "my_way_home.wad", _TURN_MOVE_BUTTONS, _TURN_MOVE, _MY_WAY_HOME,
        reports_death=False,
        description="find the vest in a maze of rooms: +1 for reaching it, -0.0001 a tic"),
    DoomScenario(
        "doom_my_way_home_flat_actions", "my_way_home.wad", _TURN_MOVE_BUTTONS, Discrete(5),
        _MY_WAY_HOME, reports_death=False,
        description="doom_my_way_home with one button at a time"),
    DoomScenario(
        "doom_deadly_corridor", "deadly_corridor.wad",
        ("TURN_LEFT", "TURN_RIGHT", "MOVE_FORWARD", "MOVE_BACKWARD", "MOVE_LEFT", "MOVE_RIGHT",
         "ATTACK"),
        Tuple((Discrete(3), Discrete(3), Discrete(3), Discrete(2))),
        {"doom_skill": 5, "death_penalty": 100.0, "render_hud": True, "render_weapon": True,
         "episode_timeout": 2100, "available_game_variables": ["HEALTH"]},
        reward_scale=0.01, stats={"kills": "KILLCOUNT", "health": "HEALTH"},
        description="run down a corridor past shooting monsters to the vest: reward for "
                    "progress, -100 for dying, scaled by 0.01"),
)}

_SF_ONLY_MAP = "its map comes with Sample Factory's examples, not with the vizdoom package"
_MATCH = ("it is a match of several players in one game, which this env family does not run; "
          "its map comes only with Sample Factory's examples too")
# Sample Factory's other doom_* envs -> why they cannot be made here.
UNAVAILABLE: dict[str, str] = {
    "doom_two_colors_easy": _SF_ONLY_MAP,
    "doom_two_colors_hard": _SF_ONLY_MAP,
    "doom_battle": _SF_ONLY_MAP,
    "doom_battle2": _SF_ONLY_MAP,
    "doom_benchmark": _SF_ONLY_MAP,
    "doom_duel_bots": _SF_ONLY_MAP + " (and it needs bots)",
    "doom_deathmatch_bots": _SF_ONLY_MAP + " (and it needs bots)",
    "doom_dwango5": _MATCH,
    "doom_duel": _MATCH,
    "doom_deathmatch_full": _MATCH,
    "doom_dm": "it is a match of 8 players in one game, which this env family does not run",
}


def matches_doom(env_name: str) -> bool:
    return env_name in SCENARIOS or env_name in UNAVAILABLE


def doom_names() -> list[str]:
    return sorted(SCENARIOS)


def _vizdoom() -> Any:
    try:
        import vizdoom
    except ImportError:
        return None
    return vizdoom


def doom_scenario(env_name: str) -> DoomScenario:
    """The scenario of a doom_* name; a UserError for Sample Factory's names that cannot be
    made here, or with the install hint when vizdoom is missing."""
    if env_name in UNAVAILABLE:
        raise UserError(f"--env={env_name} is not available: {UNAVAILABLE[env_name]}")
    if _vizdoom() is None:
        raise UserError(missing_extra_message(env_name, EXTRA))
    return SCENARIOS[env_name]


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each of `dst` output pixels in a nearest-neighbour resize of `src` pixels:
    floor(i * src / dst), as OpenCV's INTER_NEAREST (Sample Factory's resize) picks them."""
    return np.arange(dst) * src // dst


def button_table(scenario: DoomScenario) -> dict[Any, list[float]]:
    """Each action of the scenario's space (an int for a Discrete, a tuple of ints for a Tuple)
    -> the button values make_action takes."""
    space = scenario.action_space
    parts = space.spaces if isinstance(space, Tuple) else (space,)
    table = {}
    for values in itertools.product(*(range(int(part.n)) for part in parts)):
        buttons: list[float] = []
        for part, value in zip(parts, values):
            pressed = [0.0] * (int(part.n) - 1)
            if value > 0:
                pressed[value - 1] = 1.0
            buttons += pressed
        table[values if isinstance(space, Tuple) else values[0]] = buttons
    return table


class DoomEnv(gym.Env):
    """A scenario of SCENARIOS as a gymnasium env (see the module's docstring). The engine starts
    at the first reset, so an env made only to read its spaces costs nothing."""

    def __init__(self, scenario: DoomScenario, frame_skip: int, channels_first: bool = False,
                 render_mode: str | None = None):
        self.scenario = scenario
        self.frame_skip = frame_skip
        self.channels_first = channels_first
        self.render_mode = render_mode
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": TICRATE / frame_skip}
        shape = (3, HEIGHT, WIDTH) if channels_first else (HEIGHT, WIDTH, 3)
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = scenario.action_space
        self._buttons = button_table(scenario)
        self._rows = nearest_indices(RENDER_HEIGHT, HEIGHT)
        self._cols = nearest_indices(RENDER_WIDTH, WIDTH)
        self._row_axis = 1 if channels_first else 0
        self._game: Any = None
        self._screen: np.ndarray | None = None  # the last rendered screen, full size
        self._obs: np.ndarray | None = None
        self._health = 0.0
        self._scenario_return = 0.0

    def _start_game(self) -> None:
        vzd = _vizdoom()
        game = vzd.DoomGame()
        settings = {**_COMMON_SETTINGS, **self.scenario.settings}
        game.set_config({
            **settings,
            "doom_scenario_path": os.path.join(vzd.scenarios_path, self.scenario.wad),
            "screen_resolution": vzd.ScreenResolution.RES_160X120,
            # CRCGCB is [3, H, W], RGB24 [H, W, 3]: the layout asked for, without a transpose
            "screen_format": vzd.ScreenFormat.CRCGCB if self.channels_first
            else vzd.ScreenFormat.RGB24,
            "mode": getattr(vzd.Mode, settings["mode"]),
            "available_buttons": [getattr(vzd.Button, b) for b in self.scenario.buttons],
            "available_game_variables": [getattr(vzd.GameVariable, v)
                                         for v in settings.get("available_game_variables", ())],
        })
        # The engine writes its own settings file; by default that is _vizdoom.ini in the
        # working directory, which is the user's.
        game.set_doom_config_path(os.path.join(tempfile.gettempdir(),
                                               f"asyncrl-vizdoom-{os.getuid()}.ini"))
        game.set_seed(int(self.np_random.integers(2**31)))
        try:
            game.init()
        except Exception as e:
            raise RuntimeError(f"{self.scenario.name}: the ViZDoom engine did not start "
                               f"({type(e).__name__}: {e})") from e
        self._game = game
        self._variables = {name: getattr(vzd.GameVariable, variable)
                           for name, variable in self.scenario.stats.items()}
        self._health_variable = vzd.GameVariable.HEALTH

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._game is None:
            self._start_game()
        else:
            if seed is not None:
                self._game.set_seed(int(self.np_random.integers(2**31)))
            self._game.new_episode()
        self._health = self._game.get_game_variable(self._health_variable)
        self._scenario_return = 0.0
        return self._observe(), {}

    def _observe(self) -> np.ndarray:
        self._screen = screen = self._game.get_state().screen_buffer
        # Rows, then columns: two takes cost a fifth of one 2-D fancy index (250 us a frame).
        rows = np.take(screen, self._rows, axis=self._row_axis)
        self._obs = np.take(rows, self._cols, axis=self._row_axis + 1)
        return self._obs

    def step(self, action: Any):
        game = self._game
        key = tuple(int(a) for a in action) if isinstance(self.action_space, Tuple) else int(action)
        reward = game.make_action(self._buttons[key], self.frame_skip)
        self._scenario_return += reward
        reward *= self.scenario.reward_scale
        finished = game.is_episode_finished()
        if self.scenario.gathering_shaping and not finished:
            health = game.get_game_variable(self._health_variable)
            if health > self._health:
                reward += 1.0
            self._health = health
        if not finished:
            return self._observe(), reward, False, False, {}
        truncated = game.is_episode_timeout_reached()
        # A finished episode has no screen: the last one stands in for it (value bootstrapping
        # of a truncated episode reads it).
        return self._obs, reward, not truncated, truncated, {
            "episode_extra_stats": self._episode_stats()}

    def _episode_stats(self) -> dict[str, float]:
        game = self._game
        stats = {name: game.get_game_variable(variable) for name, variable in self._variables.items()}
        if self.scenario.reports_death:
            stats["deaths"] = float(game.is_player_dead())
        if self.scenario.gathering_shaping:
            stats["scenario_return"] = self._scenario_return * self.scenario.reward_scale
        return stats

    def render(self) -> np.ndarray | None:
        """The last screen at the engine's resolution, [H, W, 3] (render_mode='rgb_array')."""
        if self.render_mode != "rgb_array" or self._screen is None:
            return None
        return np.moveaxis(self._screen, 0, -1) if self.channels_first else self._screen

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game = None


def make_doom_env(env_name: str, cfg: Any, env_index: int, render_mode: str | None = None
                  ) -> gym.Env:
    scenario = doom_scenario(env_name)
    return DoomEnv(scenario, cfg.env_frameskip, channels_first=cfg.pixel_format == "CHW",
                   render_mode=render_mode)


# Sample Factory's Doom preset (sf_examples/vizdoom/doom/doom_params.py over its defaults: its
# model, a 512-unit GRU on convnet_simple, and its loss settings) but for the batch layout, tuned
# for wall-clock time to an average return of 0.5 on doom_basic on 2 CPU cores without a GPU,
# where the learner is the bottleneck (docs/vizdoom.md): 2 workers x 16 envs asking for actions
# in one inference call each (Sample Factory: its 2 x 2 envs in 2 splits, whose tiny inference
# batches cost the policy worker most of a core), and minibatches of 256 at a learning rate of
# 3e-4 (Sample Factory: 1024 at 1e-4), four times the updates for the same samples. Not tuned
# for the other scenarios.
DOOM_DEFAULTS: dict[str, Any] = {
    "env_frameskip": 4,
    "encoder_conv_architecture": "convnet_simple",
    "encoder_conv_mlp_layers": [512],
    "use_rnn": True,
    "rnn_type": "gru",
    "rnn_size": 512,
    "nonlinearity": "elu",
    "obs_subtract_mean": 0.0,
    "obs_scale": 255.0,
    "normalize_input": True,
    "normalize_returns": True,
    "exploration_loss": "symmetric_kl",
    "exploration_loss_coeff": 0.001,
    "ppo_clip_ratio": 0.1,
    "ppo_clip_value": 0.2,
    "value_loss_coeff": 0.5,
    "gamma": 0.99,
    "rollout": 32,
    "batch_size": 256,
    "num_batches_per_epoch": 1,
    "num_epochs": 1,
    "learning_rate": 3e-4,
    "num_workers": 2,
    "num_envs_per_worker": 16,
    "worker_num_splits": 1,
}
