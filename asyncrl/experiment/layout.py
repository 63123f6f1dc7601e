"""Names of the files in an experiment folder (no torch here: the launcher reads them too)."""

CONFIG_FILE = "config.json"
LOG_FILE = "asyncrl_log.txt"
CHECKPOINT_DIR = "checkpoint_p0"
# Written when a run stops because it reached train_for_env_steps or train_for_seconds (not on a
# signal or an error), removed when the next run of the folder starts: a sweep launcher skips
# experiments that have it.
FINISHED_FILE = "finished.json"
# What a launcher prints the run's console output to; it may exist before the run's first start.
CONSOLE_FILE = "console.txt"
