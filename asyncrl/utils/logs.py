"""Logging for people: short console lines; the full record (tracebacks too) in the log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FORMAT = "[%(asctime)s] %(levelname).1s %(message)s"
_DATE = "%H:%M:%S"


def setup_console_logging() -> None:
    root = logging.getLogger("asyncrl")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(_FORMAT, _DATE))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def add_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("asyncrl").addHandler(handler)
    return handler
