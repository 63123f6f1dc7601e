"""What every command line of asyncrl shares: a bad argument is one line (a UserError, which the
entry point prints and exits 2 on), and true/false are spelt the same everywhere."""

from __future__ import annotations

import argparse
from typing import Sequence

from asyncrl.utils.errors import UserError

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit; we want one line
        raise UserError(message)


def parse_bool(text: str) -> bool:
    """true/1/yes or false/0/no, in any case; else argparse's ArgumentTypeError (as a `type=`
    it becomes the error argparse reports)."""
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (use true/false or 1/0)")


def split_at_double_dash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """A tool's own arguments and those after `--` (which it hands to asyncrl.train)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]
