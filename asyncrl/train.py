"""`python -m asyncrl.train --env=CartPole-v1 [--experiment=name] [--param=value ...]`"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from asyncrl.utils.errors import UserError
from asyncrl.utils.logs import setup_console_logging

log = logging.getLogger("asyncrl.train")


def main(argv: Sequence[str] | None = None) -> int:
    setup_console_logging()
    from asyncrl.envs.command_line import parse_args
    from asyncrl.experiment.experiment import prepare_experiment

    experiment = None
    try:
        parsed = parse_args(argv, scope="train", prog="python -m asyncrl.train")
        experiment = prepare_experiment(parsed)
        from asyncrl.runtime.runner import Runner

        return Runner(experiment).run()
    except UserError as e:
        log.debug("user error", exc_info=True)
        print(f"asyncrl: error: {e}", file=sys.stderr)
        return 2
    finally:
        if experiment is not None:
            experiment.close()


if __name__ == "__main__":
    sys.exit(main())
