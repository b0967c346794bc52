"""Run the installed console script (``.venv/bin/secretsync``) as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "secretsync"


@dataclass
class Result:
    rc: int
    out: str
    err: str


Run = Callable[..., Result]


def check_one_line_error(res: Result, *needles: str) -> None:
    """Exit 1, exactly one ``secretsync: error:`` line on stderr, no traceback."""
    assert res.rc == 1, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("secretsync: error: "), res.err
    assert "Traceback" not in res.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def run(tmp_path: Path) -> Run:
    assert SCRIPT.exists(), f"console script missing: {SCRIPT} (pip install -e .)"

    def _run(
        *args: str | Path, input: bytes | str | None = None, cwd: Path | None = None
    ) -> Result:
        data = input.encode() if isinstance(input, str) else input
        env = {k: v for k, v in os.environ.items() if k != "SECRETSYNC_DEBUG"}
        env["KUBECONFIG"] = str(tmp_path / "no-kubeconfig")  # never reach a real cluster
        proc = subprocess.run(
            [str(SCRIPT), *map(str, args)],
            input=data if data is not None else b"",
            capture_output=True,
            cwd=cwd or tmp_path,
            env=env,
            timeout=120,
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return _run
