"""``secretsync.cores``: the decryption pools follow a pod's CPU limit, not the node's cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from secretsync import cores
from secretsync.cores import cpu_limit, usable_cores


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", None),  # no limit
    ("200000 100000\n", 2),
    ("150000 100000\n", 2),  # 1.5 cores: rounded up
    ("50000 100000\n", 1),  # 500m: at least one
    ("garbage\n", None),
    ("x 100000\n", None),
    ("0 100000\n", None),
])
def test_cgroup_v2_cpu_max(cpu_max: str, expected: int | None) -> None:
    assert cpu_limit(cpu_max, None, None) == expected


@pytest.mark.parametrize(("quota", "period", "expected"), [
    ("-1\n", "100000\n", None),  # no limit
    ("300000\n", "100000\n", 3),
    ("250000\n", "100000\n", 3),
    ("100000\n", "0\n", None),
])
def test_cgroup_v1_cfs_quota(quota: str, period: str, expected: int | None) -> None:
    assert cpu_limit(None, quota, period) == expected


def test_cgroup_v2_wins_and_nothing_readable_means_no_limit() -> None:
    assert cpu_limit("max 100000", "200000", "100000") is None
    assert cpu_limit(None, None, None) is None
    assert cpu_limit(None, "200000", None) is None


def test_usable_cores_is_the_affinity_capped_by_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert usable_cores(tmp_path) == 8  # no cgroup files
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    assert usable_cores(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("1600000 100000\n")  # a limit above the affinity
    assert usable_cores(tmp_path) == 8
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(tmp_path) == 2
