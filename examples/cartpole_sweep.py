"""A tiny CartPole sweep: learning rate x batch size, 4 short runs of 30,000 env steps each.

    python -m asyncrl.launch --run=examples/cartpole_sweep.py                    # this machine
    python -m asyncrl.launch --run=examples/cartpole_sweep.py --backend=ray      # a Ray cluster
    python -m asyncrl.launch --run=examples/cartpole_sweep.py --backend=slurm    # Slurm jobs
    python -m asyncrl.launch --status=examples/cartpole_sweep.py                 # the table
    python -m asyncrl.plot lr0.0003_bs256 lr0.003_bs256 --train_dir=train_dir/cartpole_lr_bs  # curves

The experiments go to train_dir/cartpole_lr_bs/<name>/, e.g. lr0.003_bs1024/.
"""

from asyncrl.launcher import Sweep

SWEEP = Sweep(
    name="cartpole_lr_bs",
    # One rollout worker each (the runs share the machine); in such short runs, best checkpoints
    # from the start (the table's best return) and a summary every second (asyncrl.plot's curves).
    base="--env=CartPole-v1 --train_for_env_steps=30000 --num_workers=1 --num_envs_per_worker=16 "
         "--save_best_after=0 --experiment_summaries_interval=1 --device=cpu",
    grid={"learning_rate": [0.0003, 0.003], "batch_size": [256, 1024]},
)
