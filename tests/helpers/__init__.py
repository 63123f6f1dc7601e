"""What the tests share besides fixtures (those are in tests/conftest.py): the harness that runs
the real workers on one loop, training as a subprocess, the missing-extra check, and env modules
that tests name as `--env=module:EnvId` with this folder on the path (HELPERS)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HELPERS = REPO / "tests" / "helpers"
