"""The controller's settings from its flags and environment knobs (SECRETSYNC_IO_THREADS,
_EXTERNAL_WORKERS, _FETCH_WINDOW, _TEMPLATE_*): defaults, values, and one clear line for a bad
one, read once at start (``controller.settings.from_args``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from secretsync.controller import main
from secretsync.controller.settings import Settings, from_args
from secretsync.errors import InvalidInput, SecretSyncError


def settings(*flags: str) -> Settings:
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    return from_args(parser.parse_args(list(flags)))


def test_defaults_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRETSYNC_IO_THREADS", "SECRETSYNC_EXTERNAL_WORKERS",
                 "SECRETSYNC_FETCH_WINDOW", "SECRETSYNC_TEMPLATE_MAX_BYTES",
                 "SECRETSYNC_TEMPLATE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    s = settings()
    assert (s.io_threads, s.external.workers, s.external.fetch_window) == (64, 16, 30)
    assert s == Settings(kubeconfig=s.kubeconfig)  # the flags' defaults are the tree's


def test_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETSYNC_IO_THREADS", " 8 ")
    monkeypatch.setenv("SECRETSYNC_FETCH_WINDOW", "-1")
    s = settings("--bitnami-compat", "--key-renew-period", "1h", "--namespace", "app")
    assert s.io_threads == 8 and s.external.fetch_window == -1.0
    assert s.sealed.bitnami_compat and s.keys.renew_period == 3600 and s.namespace == "app"


def test_a_bad_flag_value_is_one_error() -> None:
    with pytest.raises(SecretSyncError, match="--key-cutoff-time"):
        settings("--key-cutoff-time", "yesterday")


@pytest.mark.parametrize("name,value", [("SECRETSYNC_IO_THREADS", "lots"),
                                        ("SECRETSYNC_IO_THREADS", "0"),
                                        ("SECRETSYNC_EXTERNAL_WORKERS", "2.5"),
                                        ("SECRETSYNC_FETCH_WINDOW", "-5"),
                                        ("SECRETSYNC_TEMPLATE_MAX_BYTES", "10"),
                                        ("SECRETSYNC_TEMPLATE_TIMEOUT", "soon")])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                        value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=name):
        settings()


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
