"""`make demo` (``python -m sandbox.demo``) end to end against the sandbox: it exits 0, prints
every step of the story with its time, never prints a value it put in Vault, and deletes its
namespace."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secretsync.errors import KubeNotFound
from secretsync.kube import Kube

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STEP = re.compile(r"^\[\s*\d+\.\ds\] (.*)$")
STORY = (
    "sandbox up",
    "controller ready",
    "sealed Secret",
    "the controller unsealed it (Synced=True",
    "self-heal: deleted the Secret",
    "self-heal: edited the password",
    "Vault: wrote app/api",
    "Deployment web created",
    "ExternalSecret api-credentials (refreshInterval 2s) Ready",
    "Vault: rotated app/api (version 2)",
    "updated to version 2",
    "Deployment web restarted: rollout revision 1 -> 2",
    "cleaned up",
)


def test_demo_tells_the_whole_story(sandbox: Any) -> None:
    done = subprocess.run([sys.executable, "-m", "sandbox.demo"], cwd=REPO, text=True,
                          capture_output=True, timeout=180, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    steps = [m.group(1) for line in done.stdout.splitlines() if (m := STEP.match(line))]
    for phrase in STORY:  # each step, in this order
        found = [n for n, s in enumerate(steps) if phrase in s]
        assert found, f"step {phrase!r} missing:\n{done.stdout}"
        steps = steps[found[0] + 1:]
    assert "demo-api-key-" not in out, "a value written to Vault was printed"
    assert "restartedAt=" in done.stdout
    ns = re.search(r"namespace (demo-[0-9a-f]{6}) created", done.stdout)
    assert ns is not None
    kube = Kube.from_config(str(sandbox.kubeconfig))
    try:
        got = kube.request("GET", f"/api/v1/namespaces/{ns.group(1)}")
    except KubeNotFound:
        return
    assert got["metadata"].get("deletionTimestamp"), "the demo namespace was not deleted"
