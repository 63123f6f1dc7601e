"""Atomic file writes (utils/files.py), which checkpoints, config.json and the finished mark use."""

import pytest

from asyncrl.utils.files import write_atomic


def test_a_write_replaces_the_file_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, lambda f: f.write("old"))
    write_atomic(path, lambda f: f.write("new"))
    assert path.read_text() == "new" and list(tmp_path.iterdir()) == [path]
    write_atomic(path, lambda f: f.write(b"\x00bytes"), binary=True)
    assert path.read_bytes() == b"\x00bytes"


def test_a_failed_write_keeps_the_previous_file_and_removes_its_temp(tmp_path):
    path = tmp_path / "config.json"
    write_atomic(path, lambda f: f.write("old"))

    def half_then_fail(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
