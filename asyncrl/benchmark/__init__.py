"""`python -m asyncrl.benchmark [--env=CartPole-v1] [--seconds=30] [options] [-- asyncrl params]`

Measures, one after another on the same cores, how many env frames per second
  (a) raw stepping reaches: worker processes stepping their envs with random actions, nothing else;
  (b) asyncrl training reaches: `python -m asyncrl.train` in a subprocess, plus its policy lag
      (in policy versions and in SGD steps, the unit of Sample Factory's figure),
      the peak RSS of its process tree and the CPU time its processes spend per env frame once
      started (learner, policy workers, rollout workers), and so the most frames/s the cores
      allow at that cost;
  (c) optionally (`--learner_limit`) the learner alone: training iterations on random batches of
      the training-batch shape, in this process, as env frames per second;
  (d) optionally (`--sample_factory`) Sample Factory 2.1.1 with the same configuration and on the
      same device, installed once into a cached virtual environment (for Atari envs:
      sf_examples.atari.train_atari, with ale-py added to that environment; for the doom_* envs:
      sf_examples.vizdoom.train_vizdoom, with vizdoom added) or given by `--sf_python`, with
      the same figures but the CPU time per role.
and prints a table (and `--json PATH`). The parameters after `--` go to asyncrl (and to Sample
Factory where it has a parameter of that name).

One module per job: the command line and the order of the measurements (`__main__`), what to
measure (`plan`), the figures of a measurement (`figures`), raw stepping (`raw`), watching a
process tree and its CPU time (`processes`), the learner alone (`learner_limit`), asyncrl's
training run, read from its status events (`asyncrl_run`), Sample Factory's install
(`sf_install`) and run, read from its log (`sample_factory`), and the table (`report`).
"""
