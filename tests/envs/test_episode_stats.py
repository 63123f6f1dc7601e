"""Episode statistics: custom `episode_extra_stats`, --episode_counter and
--use_record_episode_statistics, for envs stepped one by one and as vector envs."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import RecordEpisodeStatistics

from asyncrl.envs.command_line import parse_args
from asyncrl.envs.registry import find_env_family, make_env, make_vector_env
from asyncrl.envs.vector import BatchedEnvVector, EnvVector, EpisodeReporting, EpisodeStats, env_info
from asyncrl.runtime.progress import extra_stat_tag
from asyncrl.runtime.stats import EpisodeTracker


pytestmark = pytest.mark.usefixtures("custom_envs")


class Lives(gym.Wrapper):
    """Like Atari's EpisodicLifeEnv and reward clipping: an 'episode' ends every 2 steps (a life
    lost) while the game goes on, and rewards are doubled."""

    def __init__(self, env):
        super().__init__(env)
        self.game_over, self.last_obs = True, None

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over, self.last_obs = terminated or truncated, obs
        life_lost = self.env.unwrapped.t % 2 == 0
        return obs, 2 * reward, terminated or life_lost, truncated, info

    def reset(self, **kwargs):
        return self.env.reset(**kwargs) if self.game_over else (self.last_obs, {})


def play(envs, steps: int, action: int = 1) -> list[EpisodeStats]:
    episodes = []
    for _ in range(steps):
        indices = np.arange(envs.num_envs)
        episodes += envs.step(indices, np.full(envs.num_envs, action)).episodes
    return episodes


def test_custom_stats_and_episode_counter_one_by_one():
    envs = EnvVector(lambda i: gym.make("Corridor-v0"), 2, seed=0,
                     reporting=EpisodeReporting(episode_counter=True))
    episodes = play(envs, 15)  # 3 episodes of 5 steps in each env
    assert [(e.episode_return, e.length) for e in episodes] == [(5.0, 5)] * 6
    assert [e.extra for e in episodes[:2]] == [
        {"right_moves": 5.0, "half_right": 2.5, "episode_number": 0.0}] * 2
    assert [e.extra["episode_number"] for e in episodes] == [0, 0, 1, 1, 2, 2]


def test_record_episode_statistics_reports_whole_games_with_raw_rewards():
    def lives_env(i):
        return Lives(RecordEpisodeStatistics(gym.make("Corridor-v0")))

    own = play(EnvVector(lives_env, 1, seed=0), 5)
    # Without the flag: one 'episode' per life, with the doubled rewards the agent sees.
    assert [(e.episode_return, e.length) for e in own] == [(4.0, 2), (4.0, 2), (2.0, 1)]
    recorded = play(EnvVector(lives_env, 1, seed=0,
                              reporting=EpisodeReporting(record_episode_statistics=True)), 10)
    assert [(e.episode_return, e.length) for e in recorded] == [(5.0, 5), (5.0, 5)]
    assert recorded[0].extra == {"right_moves": 5.0, "half_right": 2.5}


def cfg_of(*argv):
    return parse_args(list(argv), scope="train", prog="test").config()


def test_the_wrapper_is_added_once_where_it_belongs():
    cfg = cfg_of("--env=CartPole-v1", "--use_record_episode_statistics=true")
    env = make_env(find_env_family(cfg.env), cfg.env, cfg, 0)
    assert isinstance(env, RecordEpisodeStatistics)  # outermost: the env had none
    assert not isinstance(make_env(find_env_family(cfg.env), cfg.env,
                                   cfg.replace(use_record_episode_statistics=False), 0),
                          RecordEpisodeStatistics)
    pytest.importorskip("ale_py")
    cfg = cfg_of("--env=atari_pong", "--use_record_episode_statistics=true")
    env = make_env(find_env_family(cfg.env), cfg.env, cfg, 0)
    chain = []
    while env is not None:
        chain.append(type(env).__name__)
        env = getattr(env, "env", None)
    # Outside the frame skipping (which then steps the emulator directly: lengths in agent
    # steps), inside the life episodes and the sign rewards: the whole game's score.
    assert chain.count("RecordEpisodeStatistics") == 1
    assert chain.index("SignReward") < chain.index("EpisodicLife") \
        < chain.index("RecordEpisodeStatistics") < chain.index("AtariFramePreprocessing")


def test_record_episode_statistics_refuses_multi_agent_envs(tmp_path, capsys):
    from asyncrl import train

    assert train.main(["--env=rendezvous", "--use_record_episode_statistics=true",
                       f"--train_dir={tmp_path}"]) == 2
    assert "--env=rendezvous is a multi-agent env" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_vector_envs_report_custom_stats_and_recorded_statistics():
    cfg = cfg_of("--env=Corridor-v0", "--episode_counter=true")
    family = find_env_family(cfg.env)
    vector = BatchedEnvVector(lambda i, n: make_vector_env(family, cfg.env, cfg, i, n), 2, 1,
                              seed=0, reporting=EpisodeReporting.of(cfg))
    episodes = play(vector, 12)  # next-step autoreset: 5 steps and a reset step per episode
    assert [(e.episode_return, e.length) for e in episodes] == [(5.0, 5)] * 4
    assert [e.extra["episode_number"] for e in episodes] == [0, 0, 1, 1]
    assert episodes[0].extra["right_moves"] == 5.0

    # CartPole's own array implementation, wrapped by gymnasium's vector RecordEpisodeStatistics:
    # the same episodes as asyncrl's own sums.
    results = []
    for flag in ("false", "true"):
        cfg = cfg_of("--env=CartPole-v1", f"--use_record_episode_statistics={flag}")
        family = find_env_family(cfg.env)
        vector = BatchedEnvVector(lambda i, n: make_vector_env(family, cfg.env, cfg, i, n), 4, 1,
                                  seed=3, reporting=EpisodeReporting.of(cfg))
        results.append([(e.episode_return, e.length) for e in play(vector, 200, action=0)])
    assert results[0] and results[0] == results[1]


def test_env_info_unbatches_masked_and_nested_infos():
    infos = {"episode_extra_stats": {"coins": np.array([0, 3]), "_coins": np.array([False, True])},
             "_episode_extra_stats": np.array([False, True]),
             "final_info": {"x": np.array([1, 2]), "_x": np.array([True, False])},
             "_final_info": np.array([True, False]), "final_obs": np.array([None, None])}
    assert env_info(infos, 0) == {"x": 1}
    assert env_info(infos, 1) == {"episode_extra_stats": {"coins": 3}}


def test_tracker_averages_custom_stats_and_survives_a_checkpoint():
    tracker = EpisodeTracker(stats_avg=2)
    tracker.add([EpisodeStats(1.0, 1, {"coins": 1.0}), EpisodeStats(2.0, 2),
                 EpisodeStats(3.0, 3, {"coins": 5.0, "game/level": 2.0}),
                 EpisodeStats(4.0, 4, {"coins": 7.0})])
    assert tracker.average() == 3.5 and tracker.extra_averages() == {"coins": 6.0,
                                                                     "game/level": 2.0}
    restored = EpisodeTracker(stats_avg=2)
    restored.load_state_dict(tracker.state_dict())
    assert restored.extra_averages() == tracker.extra_averages() and restored.episodes == 4
    assert extra_stat_tag("coins") == "episode_extra/coins"
    assert extra_stat_tag("game/level") == "game/level"
