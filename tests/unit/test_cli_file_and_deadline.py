"""``atomic_write`` (modes, links, read-only files, streams) and ``_deadline.call``
(issue 21, items 5 and 6) as plain functions."""

from __future__ import annotations

import argparse
import os
import stat
import threading
from pathlib import Path

import pytest

from secretsync.cli import _deadline
from secretsync.cli._common import atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_mode_is_forced_and_otherwise_kept(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o644)
    atomic_write(str(path), b"plain", mode=0o600)
    assert path.read_bytes() == b"plain" and _mode(path) == 0o600
    path.chmod(0o640)
    atomic_write(str(path), b"sealed")
    assert _mode(path) == 0o640


def test_symlinks_are_followed_and_kept(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    target = tmp_path / "d" / "real"
    target.write_text("old")
    link = tmp_path / "link"
    link.symlink_to(target)
    atomic_write(str(link), b"new", mode=0o600)
    assert link.is_symlink() and target.read_bytes() == b"new" and _mode(target) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["d", "link"]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "d" / "created")
    atomic_write(str(dangling), b"x")
    assert dangling.is_symlink() and (tmp_path / "d" / "created").read_bytes() == b"x"


def test_read_only_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    path = tmp_path / "ro"
    path.write_text("keep")
    path.chmod(0o444)
    with pytest.raises(PermissionError) as info:
        atomic_write(str(path), b"new")
    assert info.value.filename == str(path)
    assert info.value.strerror == "read-only file, not rewritten"
    assert path.read_text() == "keep" and os.listdir(tmp_path) == ["ro"]


def test_a_fifo_is_written_as_a_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic_write(str(fifo), b"streamed")
    reader.join(10)
    assert got == [b"streamed"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_deadline_call_passes_results_and_errors_through() -> None:
    assert _deadline.call(lambda: 42, 5, "x") == 42

    def boom() -> int:
        raise ValueError("inner")

    with pytest.raises(ValueError, match="inner"):
        _deadline.call(boom, 5, "x")


def test_deadline_call_gives_up_naming_what() -> None:
    release = threading.Event()
    try:
        with pytest.raises(_deadline.DeadlineExceeded) as info:
            _deadline.call(lambda: release.wait(60), 0.2, "fetching the thing")
        assert info.value.message.startswith("fetching the thing: no complete answer within 0.2 s")
    finally:
        release.set()


@pytest.mark.parametrize("bad", ["0", "-3", "nan", "inf", "x"])
def test_seconds_refuses_non_positive_or_non_finite(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _deadline.seconds(bad)
    assert _deadline.seconds("2.5") == 2.5
