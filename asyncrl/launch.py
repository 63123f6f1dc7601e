"""`python -m asyncrl.launch --run=<sweep file> [--backend=processes|ray|slurm] ...` runs a sweep;
`python -m asyncrl.launch --status=<sweep>` shows where it stands (see asyncrl/launcher/)."""

import sys

from asyncrl.launcher.cli import main

if __name__ == "__main__":
    sys.exit(main())
