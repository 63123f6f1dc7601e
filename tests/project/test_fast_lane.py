"""The fast lane of docs/contributing.md: `python -m pytest -m "not slow"` leaves out the tests
marked slow and keeps the others."""

import os
import re
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_the_fast_lane_leaves_out_the_slow_tests():
    files = ["tests/runtime/test_train_e2e.py", "tests/algo/test_advantages.py"]
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow", "-q", "--collect-only",
                             "-p", "no:cacheprovider", *files],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith(files[1]) for line in collected), result.stdout
    # The tests of test_train_e2e.py (pytestmark = pytest.mark.slow) were deselected.
    assert re.search(r"\(\d+ deselected\)", result.stdout), result.stdout
