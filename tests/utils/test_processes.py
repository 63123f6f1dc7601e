"""utils/processes.py: when a process started, which its status events count their uptime from;
memory a process frees kept for its next allocations."""

import subprocess
import sys
import time

import psutil
import pytest

from asyncrl.utils.processes import process_start_time


def test_process_start_time_is_when_the_process_started():
    before = time.time()
    proc = subprocess.run([sys.executable, "-c", "import time; time.sleep(0.3); "
                           "from asyncrl.utils.processes import process_start_time; "
                           "print(process_start_time())"], capture_output=True, text=True, check=True)
    started = float(proc.stdout)
    # It started after `before` (to a clock tick), and 0.3 s or more before it printed.
    assert before - 0.02 <= started <= time.time() - 0.3
    # psutil's, counted from a boot time in whole seconds, agrees to within a second.
    assert abs(process_start_time() - psutil.Process().create_time()) < 1.0


# Allocates and frees a 40 MB torch tensor (a batch of images as floats) again and again, as a
# learner's iterations do, then prints the page faults of ten more such iterations.
_REALLOCATION_FAULTS = """
import resource, sys, torch
from asyncrl.utils.processes import reuse_freed_memory
if sys.argv[1] == "reuse":
    reuse_freed_memory()
for _ in range(30):
    torch.ones(10_000_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(10_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
def test_freed_memory_is_reused_without_faulting_its_pages_again():
    def faults(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", _REALLOCATION_FAULTS, mode],
                                  capture_output=True, text=True, check=True).stdout)

    # By default malloc maps a block that large afresh each time, and the kernel zero-fills
    # each of its ~10,000 pages on first touch; kept, freed blocks are reused as they are.
    assert faults("default") > 10 * 5000
    assert faults("reuse") < 10 * 500
