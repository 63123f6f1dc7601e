"""The one declarative table of parameters.

Every parameter asyncrl accepts is a row here. The table generates the argparse parser and
`--help` (config/parser.py), the typed immutable `Config` and `config.json` (config/config.py) and
per-parameter validation. Names, defaults and meaning follow Sample Factory 2's parameter
reference; a parameter is listed only once the code really implements it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One parameter: how it is spelled, typed, defaulted, constrained and explained.

    `is_list` makes a list of `type` items (`--encoder_mlp_layers 64 64` or `64,64`).
    `optional` allows the value None (spelled `None` on the command line).
    `minimum`/`maximum` are inclusive bounds for numbers (for lists: each item).
    `scope` says which entry points accept it: "train", "enjoy" or "all".
    """

    name: str
    type: type
    default: Any
    help: str
    group: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    is_list: bool = False
    optional: bool = False
    scope: str = "all"

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise TypeError(f"parameter {self.name}: unsupported type {self.type}")
        if self.scope not in ("train", "enjoy", "all"):
            raise ValueError(f"parameter {self.name}: unknown scope {self.scope}")


def _p(name: str, type_: type, default: Any, help_: str, group: str, **kw: Any) -> Param:
    return Param(name=name, type=type_, default=default, help=help_, group=group, **kw)


_BASIC = "basic"
_RUNTIME = "runtime"
_BATCH = "batching and training loop"
_RL = "reinforcement learning"
_OPT = "optimization"
_OBS = "observations"
_MODEL = "model"
_CKPT = "checkpoints and stopping"
_LOG = "logging and summaries"
_WANDB = "weights and biases"
_EVAL = "evaluation"
_PBT = "population-based training"

PARAMS: tuple[Param, ...] = (
    # basic
    _p("algo", str, "APPO", "Algorithm to use", _BASIC, choices=("APPO",)),
    _p("env", str, None, "Name of the environment to use: a gymnasium id (e.g. CartPole-v1; "
       "MiniGrid, BabyAI and ViZDoom ids too, e.g. MiniGrid-DoorKey-5x5-v0, with their package "
       "installed), a registered env family name, pettingzoo:<module> for a PettingZoo Parallel "
       "env (e.g. pettingzoo:mpe2.simple_spread_v3), or module:EnvId (e.g. "
       "my_package.envs:MyEnv-v0), which imports the module (registering the id) and then makes "
       "EnvId. Required.", _BASIC, optional=True),
    _p("env_kwargs", str, None, "Keyword arguments for the env's constructor (gymnasium.make, "
       "a PettingZoo parallel_env), as key=value,key=value (values read as JSON where they are "
       "JSON, True/False/None too, else strings: is_slippery=False,map_name=8x8) or as a JSON "
       "object ('{\"is_slippery\": false}'); in a --config file also a YAML mapping. Refused by "
       "env families that take none (rendezvous, memory_cue)", _BASIC, optional=True),
    _p("experiment", str, "default_experiment",
       "Unique experiment name; also the name of the experiment folder in train_dir. If the folder "
       "exists the experiment is RESUMED and parameters given on this command line override the "
       "stored config.json.", _BASIC),
    _p("train_dir", str, "train_dir", "Root folder for all experiments", _BASIC),
    _p("restart_behavior", str, "resume",
       "What to do when the experiment folder already exists: 'resume' continues it, 'restart' "
       "keeps the old folder under <experiment>_old<N> and starts from scratch, 'overwrite' deletes "
       "the old folder and starts from scratch", _BASIC, choices=("resume", "restart", "overwrite"),
       scope="train"),
    _p("initialize_from", str, None,
       "Start a new experiment from the weights (and normalizer statistics) of another experiment "
       "(its name in train_dir) or of a checkpoint file; counters start at zero", _BASIC,
       optional=True, scope="train"),
    _p("device", str, "gpu", "Device for the learner and inference. 'gpu' falls back to the CPU "
       "with a warning when CUDA is not available", _BASIC, choices=("gpu", "cpu")),
    _p("seed", int, None, "Fixed seed for torch, numpy and the envs (None: random)", _BASIC,
       optional=True, minimum=0),
    # runtime
    _p("serial_mode", bool, False,
       "Run everything in one process, acting and learning in turn (simplest to debug); False "
       "runs rollout workers, policy workers and the learner as parallel processes", _RUNTIME,
       scope="train"),
    _p("batched_sampling", bool, False,
       "Step the envs of each split as one gymnasium vector env with arrays (the env's own "
       "array implementation where it has one, e.g. CartPole-v1: much faster) instead of one by "
       "one. Episode returns and lengths come from rewards and done flags, custom episode "
       "statistics from the vector env's infos; a vector env that raises "
       "is recreated as a whole", _RUNTIME, scope="train"),
    _p("env_backend", str, "builtin", "What steps the envs of --batched_sampling: 'builtin', "
       "the env family's own code (for Atari asyncrl's preprocessing in numpy, env after env), "
       "or 'envpool', EnvPool's C++ thread pool, which steps and preprocesses each split's envs "
       "in one call (Atari games; needs the 'envpool' extra and --batched_sampling=True; "
       "docs/atari.md lists how its preprocessing differs)", _RUNTIME,
       choices=("builtin", "envpool"), scope="train"),
    _p("num_policies", int, 1, "Number of policies trained jointly, each with its own learner, "
       "policy workers, weights, optimizer and checkpoints (checkpoint_p<i>), sharing the rollout "
       "workers: env i (or, with pbt_mix_policies_in_one_env, agent i of a multi-agent env) acts "
       "for policy i % num_policies, so there must be at least as many envs (agents) as "
       "policies. Training stops when every policy has reached train_for_env_steps", _RUNTIME,
       minimum=1, scope="train"),
    _p("pbt_mix_policies_in_one_env", bool, True, "For multi-agent envs: whether the agents of "
       "one env may belong to different policies (agents are assigned to policies in turn); "
       "False gives every agent of an env the same policy (envs are assigned in turn)", _RUNTIME,
       scope="train"),
    _p("policy_workers_per_policy", int, 1, "Number of policy (inference) worker processes per "
       "policy; rollout workers are shared among them", _RUNTIME, minimum=1),
    _p("async_rl", bool, True, "Collect experience while the learner trains on the previous batch "
       "(some experience then comes from an older policy: policy lag). False alternates: collect "
       "one batch with the current policy, train on it, repeat (policy lag 0)", _RUNTIME),
    _p("num_batches_to_accumulate", int, 2, "The learner holds at most this many training "
       "batches of unprocessed experience; beyond that, experience collection pauses", _RUNTIME,
       minimum=1),
    _p("max_policy_lag", int, 1000, "Discard experience older than this many policy versions",
       _RUNTIME, minimum=0),
    _p("heartbeat_interval", int, 20, "How often (seconds) components send a heartbeat", _RUNTIME,
       minimum=1),
    _p("heartbeat_reporting_interval", int, 180, "How often (seconds) the runner reports "
       "components whose heartbeat is late", _RUNTIME, minimum=1),
    _p("max_consecutive_env_failures", int, 10, "An env that raises in step or reset is logged "
       "and recreated; after this many failures in a row of one env the run stops with an error",
       _RUNTIME, minimum=1),
    _p("set_workers_cpu_affinity", bool, True, "Pin rollout worker i to CPU core i % cores "
       "(fewer context switches); parallel mode only", _RUNTIME),
    _p("force_envs_single_thread", bool, False, "Limit the thread pools of libraries the envs "
       "use (OpenMP, BLAS) to one thread per rollout worker (threadpoolctl)", _RUNTIME),
    _p("decorrelate_experience_max_seconds", float, 0.0, "Rollout worker i starts collecting "
       "i/num_workers of this many seconds late, so that trajectories do not all arrive at once",
       _RUNTIME, minimum=0.0),
    _p("decorrelate_envs_on_one_worker", bool, True, "Before collecting, env i of a worker "
       "takes i*rollout random steps (not recorded), so that episodes of fixed length do not "
       "all reset in the same rollout", _RUNTIME),
    _p("default_niceness", int, 0, "Niceness of the worker processes", _RUNTIME, minimum=-20,
       maximum=19),
    _p("num_workers", int, 4, "Number of environment workers (in serial mode: groups of envs "
       "stepped in the main process)", _RUNTIME, minimum=1),
    _p("num_envs_per_worker", int, 2, "Number of envs on one worker; must be divisible by "
       "worker_num_splits", _RUNTIME, minimum=1),
    _p("worker_num_splits", int, 2,
       "Envs of a worker are split into this many groups; each group gets its actions in its own "
       "inference call (2 = double-buffered sampling, 1 = one call for all envs)", _RUNTIME,
       minimum=1),
    # batching
    _p("batch_size", int, 1024, "Minibatch size for SGD, in transitions", _BATCH, minimum=1),
    _p("num_batches_per_epoch", int, 1, "The training dataset of one training iteration is this "
       "many minibatches (batch_size x num_batches_per_epoch transitions)", _BATCH, minimum=1),
    _p("num_epochs", int, 1, "Number of passes over the training dataset of one iteration", _BATCH,
       minimum=1),
    _p("rollout", int, 32, "Length of the trajectory sent to the learner from each env, in "
       "steps; batch_size must be a multiple of it", _BATCH, minimum=1),
    _p("recurrence", int, -1, "Length of the sequences the learner trains on (backpropagation "
       "through time), in steps; rollout must be a multiple of it. Each sequence starts from the "
       "recurrent state the policy had when it acted. -1: rollout for a recurrent policy, 1 for a "
       "feed-forward one (whose minibatches are then cut into sequences of this many steps)",
       _BATCH, minimum=-1),
    _p("shuffle_minibatches", bool, False, "Shuffle the transitions (or trajectories, with "
       "V-trace) into new minibatches each epoch", _BATCH),
    # RL
    _p("gamma", float, 0.99, "Discount factor", _RL, minimum=0.0, maximum=1.0),
    _p("reward_scale", float, 1.0, "Multiply all rewards by this factor before learning", _RL),
    _p("reward_clip", float, 1000.0, "Clip rewards to [-reward_clip, reward_clip] after scaling",
       _RL, minimum=0.0),
    _p("value_bootstrap", bool, False, "On a truncated episode (time limit), add "
       "gamma * V(final observation) to the last reward instead of treating it as terminal", _RL),
    _p("normalize_returns", bool, True, "Learn values in a space normalized by running "
       "statistics of the returns", _RL),
    _p("exploration_loss_coeff", float, 0.003, "Coefficient of the exploration loss", _RL,
       minimum=0.0),
    _p("value_loss_coeff", float, 0.5, "Coefficient of the critic loss", _RL, minimum=0.0),
    _p("kl_loss_coeff", float, 0.0, "Coefficient of the KL(current || behaviour policy) loss; 0 "
       "disables it", _RL, minimum=0.0),
    _p("exploration_loss", str, "entropy", "'entropy' maximizes entropy; 'symmetric_kl' penalizes "
       "the symmetric KL divergence to a uniform prior (discrete actions only: Discrete, "
       "MultiDiscrete or Tuples of them)", _RL,
       choices=("entropy", "symmetric_kl")),
    _p("gae_lambda", float, 0.95, "Generalized Advantage Estimation lambda (used when "
       "with_vtrace is False)", _RL, minimum=0.0, maximum=1.0),
    _p("ppo_clip_ratio", float, 0.1, "PPO clip: ratio clipped to [1/(1+e), 1+e] (unbiased form "
       "of the paper's [1-e, 1+e])", _RL, minimum=0.0),
    _p("ppo_clip_value", float, 1.0, "Maximum absolute change of the value estimate before it is "
       "clipped (in normalized units when normalize_returns)", _RL, minimum=0.0),
    _p("with_vtrace", bool, False, "Use V-trace off-policy correction instead of GAE", _RL),
    _p("vtrace_rho", float, 1.0, "rho_hat clipping of V-trace (importance weight truncation)",
       _RL, minimum=0.0),
    _p("vtrace_c", float, 1.0, "c_hat clipping of V-trace (lower values reduce variance)", _RL,
       minimum=0.0),
    # optimization
    _p("optimizer", str, "adam", "Optimizer", _OPT, choices=("adam", "lamb")),
    _p("adam_eps", float, 1e-6, "Adam epsilon", _OPT, minimum=0.0),
    _p("adam_beta1", float, 0.9, "Adam momentum decay coefficient", _OPT, minimum=0.0, maximum=1.0),
    _p("adam_beta2", float, 0.999, "Adam second momentum decay coefficient", _OPT, minimum=0.0,
       maximum=1.0),
    _p("max_grad_norm", float, 4.0, "Max L2 norm of the gradient; 0 disables clipping", _OPT,
       minimum=0.0),
    _p("learning_rate", float, 1e-4, "Learning rate", _OPT, minimum=0.0),
    _p("lr_schedule", str, "constant", "'constant'; 'linear_decay' lowers the learning rate in a "
       "straight line from learning_rate to 0 at train_for_env_steps, by the policy's env steps "
       "(set before each training iteration; a resumed run goes on where it was, and with PBT "
       "it scales each policy's own learning_rate); 'kl_adaptive_minibatch' and "
       "'kl_adaptive_epoch' adapt the learning rate to keep the KL divergence from the "
       "behaviour policy near lr_schedule_kl_threshold, checked after every minibatch or every "
       "epoch", _OPT,
       choices=("constant", "linear_decay", "kl_adaptive_minibatch", "kl_adaptive_epoch")),
    _p("lr_schedule_kl_threshold", float, 0.008, "KL target of the kl_adaptive schedules", _OPT,
       minimum=0.0),
    _p("lr_adaptive_min", float, 1e-6, "Minimum learning rate of the kl_adaptive schedules", _OPT,
       minimum=0.0),
    _p("lr_adaptive_max", float, 1e-2, "Maximum learning rate of the kl_adaptive schedules", _OPT,
       minimum=0.0),
    # observations
    _p("obs_subtract_mean", float, 0.0, "Subtract this from observations (e.g. 128 for 8-bit "
       "images)", _OBS),
    _p("obs_scale", float, 1.0, "Divide observations by this (after obs_subtract_mean). With "
       "the defaults (obs_scale=1, obs_subtract_mean=0) uint8 observations (8-bit images) are "
       "divided by 255; any other value applies to every Box observation as given", _OBS),
    _p("normalize_input", bool, True, "Normalize observations with running mean and standard "
       "deviation", _OBS),
    _p("pixel_format", str, "auto", "Layout of image observations (Box observations of rank 3): "
       "auto reads an image as channels-last (HWC) when its last dimension is smaller than its "
       "first, e.g. (240, 320, 3), else as channels-first (CHW), e.g. (4, 84, 84); CHW or HWC "
       "forces the layout where the shape is ambiguous, e.g. (3, 64, 3). Env families that make "
       "images themselves produce this layout: Atari CHW for auto, doom HWC for auto", _OBS,
       choices=("auto", "CHW", "HWC")),
    _p("normalize_input_keys", str, None, "Observation keys to normalize (None: every Box "
       "observation). A Box observation space has the single key 'obs'; a Dict's keys are its "
       "own (nested ones joined by '/'), a Tuple's 'obs/0', 'obs/1'...", _OBS, is_list=True,
       optional=True),
    # model
    _p("encoder_mlp_layers", int, [512, 512], "Sizes of the MLP encoder layers (for vector "
       "observations), e.g. --encoder_mlp_layers 256 128 (or 256,128)", _MODEL, is_list=True, minimum=1),
    _p("encoder_conv_architecture", str, "convnet_simple", "Convolutional encoder of image "
       "observations (Box observations of rank 3, see pixel_format; smaller images than it takes "
       "go to the MLP encoder): convnet_simple (32 8x8/4, 64 "
       "4x4/2, 128 3x3/2), convnet_impala (IMPALA's shallow net: 16 8x8/4, 32 4x4/2), "
       "convnet_atari (Nature DQN: 32 8x8/4, 64 4x4/2, 64 3x3/1) or resnet_impala (IMPALA's "
       "residual net: 16, 32, 32 channels, each a 3x3 conv, a 3x3/2 max-pool and 2 residual "
       "blocks); other observation keys use the MLP encoder", _MODEL,
       choices=("convnet_simple", "convnet_impala", "convnet_atari", "resnet_impala")),
    _p("encoder_conv_mlp_layers", int, [512], "Sizes of the fully connected layers after the "
       "convolutional encoder (empty: the flattened convolutional features)", _MODEL,
       is_list=True, minimum=1),
    _p("use_rnn", bool, True, "Put a recurrent core (rnn_type) between the encoder and the "
       "decoder: the policy then has a hidden state per agent, carried from step to step and "
       "reset to zero when an episode ends", _MODEL),
    _p("rnn_type", str, "gru", "Type of the recurrent core when use_rnn is True", _MODEL,
       choices=("gru", "lstm")),
    _p("rnn_size", int, 512, "Size of the hidden state of the recurrent core (of each layer)",
       _MODEL, minimum=1),
    _p("rnn_num_layers", int, 1, "Number of stacked recurrent layers in the core", _MODEL,
       minimum=1),
    _p("decoder_mlp_layers", int, [], "Sizes of the MLP decoder layers after the core (empty: "
       "identity)", _MODEL, is_list=True, minimum=1),
    _p("nonlinearity", str, "elu", "Activation function", _MODEL, choices=("elu", "relu", "tanh")),
    _p("policy_initialization", str, "orthogonal", "Weight initialization", _MODEL,
       choices=("orthogonal", "xavier_uniform", "torch_default")),
    _p("policy_init_gain", float, 1.0, "Gain of the orthogonal / xavier initialization of "
       "every fully connected and convolutional layer (the output layers too, unless "
       "policy_head_init_gain / value_head_init_gain say otherwise)", _MODEL, minimum=0.0),
    _p("policy_head_init_gain", float, None, "Gain of the orthogonal / xavier initialization of "
       "the policy's output layer (action logits, means and adaptive standard deviations); "
       "None: policy_init_gain. CleanRL's PPO uses 0.01, so that the first policy is near "
       "uniform whatever the observation", _MODEL, minimum=0.0, optional=True),
    _p("value_head_init_gain", float, None, "Gain of the orthogonal / xavier initialization of "
       "the value head; None: policy_init_gain. CleanRL's PPO uses 1.0 (with 2**0.5 for the "
       "hidden layers)", _MODEL, minimum=0.0, optional=True),
    _p("actor_critic_share_weights", bool, True, "Share the encoder, core and decoder between "
       "the policy and the value function (False: each has its own, recurrent state included)",
       _MODEL),
    _p("adaptive_stddev", bool, True, "Continuous (Box) actions, also the Box parts of a Tuple: "
       "state-dependent standard deviation (else one learned parameter per action dimension)",
       _MODEL),
    _p("continuous_tanh_scale", float, 0.0, "Continuous (Box) actions, also the Box parts of a "
       "Tuple: squash means as tanh(mu / scale) * scale; 0 disables it", _MODEL, minimum=0.0),
    _p("initial_stddev", float, 1.0, "Continuous (Box) actions, also the Box parts of a Tuple: "
       "initial standard deviation", _MODEL, minimum=1e-6),
    # checkpoints and stopping
    _p("train_for_env_steps", int, 10_000_000_000, "Stop after this many env steps", _CKPT,
       minimum=0, scope="train"),
    _p("train_for_seconds", int, 10_000_000_000, "Stop after this many seconds of this run", _CKPT,
       minimum=0, scope="train"),
    _p("save_every_sec", int, 120, "Checkpoint every this many seconds", _CKPT, minimum=1,
       scope="train"),
    _p("keep_checkpoints", int, 2, "Number of regular checkpoints to keep", _CKPT, minimum=1,
       scope="train"),
    _p("load_checkpoint_kind", str, "latest", "Which checkpoint to resume from or evaluate",
       _CKPT, choices=("latest", "best")),
    _p("save_milestones_sec", int, -1, "Also keep a checkpoint every this many seconds in "
       "checkpoint_p0/milestones (-1: never)", _CKPT, minimum=-1, scope="train"),
    _p("save_best_every_sec", int, 5, "How often to check whether the policy is the best so far",
       _CKPT, minimum=1, scope="train"),
    _p("save_best_metric", str, "reward", "Metric for the best checkpoint: the average episode "
       "'reward' (return) or 'len' (length) over the last stats_avg training episodes, or "
       "'eval/return': the average return of an evaluation during training (needs "
       "eval_every_env_steps; the best checkpoint then holds exactly the weights evaluated)",
       _CKPT, choices=("reward", "len", "eval/return"), scope="train"),
    _p("save_best_after", int, 100_000, "Save best checkpoints only after this many env steps "
       "(lucky early episodes do not count)", _CKPT, minimum=0, scope="train"),
    # logging
    _p("log_to_file", bool, True, "Also write the log to asyncrl_log.txt in the experiment "
       "folder", _LOG, scope="train"),
    _p("experiment_summaries_interval", int, 10, "Write summaries (TensorBoard, wandb) every "
       "this many seconds", _LOG, minimum=1, scope="train"),
    _p("flush_summaries_interval", int, 30, "Flush TensorBoard summaries every this many "
       "seconds", _LOG, minimum=1, scope="train"),
    _p("stats_avg", int, 100, "Number of episodes to average episode statistics over", _LOG,
       minimum=1),
    _p("use_record_episode_statistics", bool, False, "Take each episode's return and length "
       "from gymnasium's RecordEpisodeStatistics wrapper (info['episode']) instead of summing the "
       "rewards asyncrl sees, and count an episode only when the step that ends it carries "
       "info['episode']: with wrappers that clip rewards or end an episode per life, the "
       "statistics show the whole game's score. An env without the wrapper gets one around it; "
       "Atari puts it above the frame skipping and below its life episodes and sign rewards "
       "(lengths in agent steps). Not for multi-agent envs", _LOG),
    _p("episode_counter", bool, False, "Count the episodes of each env: every finished episode "
       "reports its number in its env (0, 1, ...) as the custom episode statistic "
       "episode_number", _LOG),
    # wandb
    _p("with_wandb", bool, False, "Log to Weights & Biases (needs the 'wandb' extra; "
       "WANDB_MODE=offline works without a network)", _WANDB, scope="train"),
    _p("wandb_user", str, None, "W&B entity (user or team)", _WANDB, optional=True, scope="train"),
    _p("wandb_project", str, "asyncrl", "W&B project", _WANDB, scope="train"),
    _p("wandb_group", str, None, "W&B group; None means the env name", _WANDB, optional=True,
       scope="train"),
    _p("wandb_job_type", str, "APPO", "W&B job type", _WANDB, scope="train"),
    _p("wandb_tags", str, [], "W&B tags", _WANDB, is_list=True, scope="train"),
    _p("wandb_dir", str, None, "Folder for W&B files; None means the experiment folder", _WANDB,
       optional=True, scope="train"),
    # population-based training
    _p("with_pbt", bool, False, "Population-based training of the num_policies policies: every "
       "pbt_period_env_steps the worst copy the best (weights, optimizer state, hyperparameters) "
       "and the hyperparameters of all but the best mutate", _PBT, scope="train"),
    _p("pbt_period_env_steps", int, 5_000_000, "A PBT round happens every this many env steps "
       "of each policy", _PBT, minimum=1, scope="train"),
    _p("pbt_start_mutation", int, 20_000_000, "The first PBT round happens once every policy has "
       "this many env steps (time for the population to diversify)", _PBT, minimum=0,
       scope="train"),
    _p("pbt_replace_fraction", float, 0.3, "Fraction of the population (rounded up) that counts "
       "as best and as worst in a PBT round", _PBT, minimum=0.0, maximum=0.5, scope="train"),
    _p("pbt_mutation_rate", float, 0.15, "Probability that a hyperparameter of a policy that is "
       "not among the best mutates in a PBT round", _PBT, minimum=0.0, maximum=1.0,
       scope="train"),
    _p("pbt_replace_reward_gap", float, 0.1, "A worst policy copies a best one only when it "
       "trails it by more than this fraction of the best objective (and by more than "
       "pbt_replace_reward_gap_absolute)", _PBT, minimum=0.0, scope="train"),
    _p("pbt_replace_reward_gap_absolute", float, 1e-6, "A worst policy copies a best one only "
       "when it trails it by more than this much", _PBT, minimum=0.0, scope="train"),
    _p("pbt_optimize_gamma", bool, False, "Let PBT mutate gamma too (its horizon 1/(1-gamma) "
       "scales)", _PBT, scope="train"),
    _p("pbt_target_objective", str, "true_objective", "What PBT ranks policies by: "
       "true_objective is the average episode return; any other name is a custom episode "
       "statistic the env reports in info['episode_extra_stats']", _PBT, scope="train"),
    _p("pbt_perturb_min", float, 1.1, "A mutation multiplies or divides a hyperparameter by a "
       "factor drawn uniformly from [pbt_perturb_min, pbt_perturb_max]", _PBT, minimum=1.0,
       scope="train"),
    _p("pbt_perturb_max", float, 1.5, "See pbt_perturb_min", _PBT, minimum=1.0, scope="train"),
    _p("policy_initial_hyperparameters", str, [], "Starting values of individual policies' "
       "hyperparameters (those PBT tunes: learning_rate, exploration_loss_coeff, "
       "value_loss_coeff, max_grad_norm, ppo_clip_ratio, ppo_clip_value, gamma) as "
       "POLICY:NAME=VALUE items, e.g. --policy_initial_hyperparameters 2:learning_rate=1e-2 "
       "3:learning_rate=1e-2; the others start from the command line's values", _PBT,
       is_list=True, scope="train"),
    # evaluation (during training, and asyncrl.enjoy)
    _p("eval_every_env_steps", int, 0, "Evaluate each policy every this many of its env steps "
       "during training (0: never): its learner saves a snapshot, and an eval worker (its own "
       "process; inline in serial mode) plays eval_episodes episodes with it on envs of its "
       "own, reported as eval/... summaries, in the status line and the log", _EVAL, minimum=0,
       scope="train"),
    _p("eval_episodes", int, 10, "Number of episodes of each evaluation during training", _EVAL,
       minimum=1, scope="train"),
    _p("eval_num_envs", int, 4, "Number of eval envs stepped together (one forward pass for "
       "all), at most eval_episodes; each plays an equal share of the episodes (the first ones "
       "one more), so that short episodes are not favoured", _EVAL, minimum=1, scope="train"),
    _p("eval_env_kwargs", str, None, "Keyword arguments for the constructor of the eval envs "
       "during training instead of env_kwargs (same forms as env_kwargs; None: env_kwargs)",
       _EVAL, optional=True, scope="train"),
    _p("policy_index", int, 0, "Which policy of a multi-policy experiment to evaluate (its "
       "checkpoint_p<i>)", _EVAL, minimum=0, scope="enjoy"),
    _p("max_num_episodes", int, 10, "Number of episodes to evaluate", _EVAL, minimum=1,
       scope="enjoy"),
    _p("max_num_frames", int, 1_000_000_000, "Stop evaluating after this many env steps", _EVAL,
       minimum=1, scope="enjoy"),
    _p("eval_deterministic", bool, False, "Take the most likely action instead of sampling (in "
       "asyncrl.enjoy and in evaluations during training)", _EVAL),
    _p("save_video", bool, False, "Record the evaluation as an mp4 video in the experiment "
       "folder, headless (the env renders rgb_array frames: one after each reset and step); "
       "needs the 'video' extra", _EVAL, scope="enjoy"),
    _p("video_frames", int, 1_000_000_000, "Put at most this many frames into the video (the "
       "default: every frame evaluated); -1: only the first episode", _EVAL, minimum=-1,
       scope="enjoy"),
    _p("video_name", str, None, "File name of the video in the experiment folder (None: "
       "replay.mp4); .mp4 is added when missing", _EVAL, optional=True, scope="enjoy"),
    _p("fps", int, 0, "Frames per second of the video (0: the rate the env declares in its "
       "metadata, render_fps, else 30)", _EVAL, minimum=0, scope="enjoy"),
    _p("json", str, None, "Also write the evaluation to this JSON file: each episode's return, "
       "length and custom statistics, and the summary (mean, std, min, max)", _EVAL,
       optional=True, scope="enjoy"),
)
