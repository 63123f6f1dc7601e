"""Names of the files in an experiment folder (no torch here: the launcher reads them too)."""

CONFIG_FILE = "config.json"
LOG_FILE = "asyncrl_log.txt"


def policy_checkpoint_dir(policy: int) -> str:
    """The checkpoint folder of one policy (each policy of a multi-policy run has its own)."""
    return f"checkpoint_p{policy}"


CHECKPOINT_DIR = policy_checkpoint_dir(0)  # the only policy's, or the first one's
# Written when a run stops because it reached train_for_env_steps or train_for_seconds (not on a
# signal or an error), removed when the next run of the folder starts: a sweep launcher skips
# experiments that have it.
FINISHED_FILE = "finished.json"
# What a launcher prints the run's console output to; it may exist before the run's first start.
CONSOLE_FILE = "console.txt"
# The run's status as JSON lines, one event a line, appended (status_events.py owns the format).
STATUS_EVENTS_FILE = "status.jsonl"
