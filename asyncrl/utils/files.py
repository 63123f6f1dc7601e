"""Files written so that a crash at any moment leaves either the previous file or the complete
new one, never a partial file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def write_atomic(path: Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """`write(f)` fills a temporary file beside `path` (`.<name>.<random>.tmp`), which is flushed
    to disk and renamed over `path`; the temporary file is removed if anything fails."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            # The data must be on disk before the rename, or a power loss could leave the new name
            # pointing at an empty or partial file.
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """A rename lives in the directory entry; without this it may be lost on power failure."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
