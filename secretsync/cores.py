"""How many cores this process may use: its CPU affinity, capped by a cgroup CPU limit.

Why: the decryption pools (the controller's, and ``keys.unseal_many`` for the CLI) are sized
to the cores (RSA runs without the GIL). In a pod with a
CPU limit, the affinity still lists every core of the node -- 64 threads for a limit of 2
cores only queue behind the CFS quota (throttled in bursts) and hold a thread's memory each.
Go 1.25 reads the same limit for GOMAXPROCS; this is the Python side of that.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cpu_limit(cpu_max: str | None, v1_quota: str | None, v1_period: str | None) -> int | None:
    """Pure: the whole cores a CFS quota allows, rounded up and at least 1; None without a
    limit. ``cpu_max``: cgroup v2's ``cpu.max`` ("max 100000" or "150000 100000");
    ``v1_quota``/``v1_period``: cgroup v1's ``cpu.cfs_quota_us`` (-1: none) and
    ``cpu.cfs_period_us``. Unreadable or malformed values mean no limit."""
    quota = period = None
    if cpu_max is not None:
        parts = cpu_max.split()
        if len(parts) == 2 and parts[0] != "max":
            quota, period = parts
    elif v1_quota is not None and v1_period is not None:
        quota, period = v1_quota.strip(), v1_period.strip()
    try:
        q, p = int(quota or 0), int(period or 0)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def usable_cores(root: Path = CGROUP) -> int:
    """The cores this process may run on (affinity), capped by its cgroup's CPU limit."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    limit = cpu_limit(_read(root / "cpu.max"), _read(root / "cpu" / "cpu.cfs_quota_us"),
                      _read(root / "cpu" / "cpu.cfs_period_us"))
    return min(cores, limit) if limit else cores
