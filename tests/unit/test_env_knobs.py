"""The controller's environment knobs (SECRETSYNC_IO_THREADS, _EXTERNAL_WORKERS,
_FETCH_WINDOW): defaults, values, and one clear line for a bad one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from secretsync.controller import runtime
from secretsync.errors import InvalidInput


def test_defaults_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRETSYNC_IO_THREADS", "SECRETSYNC_EXTERNAL_WORKERS",
                 "SECRETSYNC_FETCH_WINDOW"):
        monkeypatch.delenv(name, raising=False)
    assert (runtime.io_threads(), runtime.external_workers(), runtime.fetch_window()) == (
        64, 16, 30)


def test_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETSYNC_IO_THREADS", " 8 ")
    monkeypatch.setenv("SECRETSYNC_FETCH_WINDOW", "-1")
    assert runtime.io_threads() == 8 and runtime.fetch_window() == -1.0


@pytest.mark.parametrize("name,value", [("SECRETSYNC_IO_THREADS", "lots"),
                                        ("SECRETSYNC_IO_THREADS", "0"),
                                        ("SECRETSYNC_EXTERNAL_WORKERS", "2.5"),
                                        ("SECRETSYNC_FETCH_WINDOW", "-5")])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                        value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=name):
        runtime.check_env_knobs()


def test_the_controller_stops_with_one_line() -> None:
    env = {**os.environ, "SECRETSYNC_IO_THREADS": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "secretsync", "controller", "--kubeconfig", "/nonexistent",
         "--no-leader-elect", "--http-port", "0"],
        env=env, capture_output=True, text=True, timeout=60)
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 1
    assert len(out.splitlines()) == 1 and "Traceback" not in out
    assert "SECRETSYNC_IO_THREADS='lots' is not a whole number >= 1" in out
