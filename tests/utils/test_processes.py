"""utils/processes.py: when a process started, which its status events count their uptime from."""

import subprocess
import sys
import time

import psutil

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
