"""The README's table of status reasons lists every reason the controller can write on an
object, and nothing that the code no longer sets (issue: "every status reason the controller
can set is listed in the README")."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Reasons of errors that stop the controller at start (one log line, exit 1) or that only the
# CLI raises: they are never written into an object's condition.
NOT_ON_OBJECTS = {"Error", "InvalidFlag", "HttpPortUnavailable", "InvalidHashKey", "InvalidKey"}
_SOURCES = ["errors.py", "reconcile", "controller", "backends", "kube"]
_PATTERNS = [
    re.compile(r'reason\s*=\s*"([A-Za-z]+)"'),
    re.compile(r'REASON_[A-Z_]+\s*=\s*"([A-Za-z]+)"'),
    re.compile(r'"(Target(?:Missing|NotOwned|Immutable))"'),
    re.compile(r'_succeed\([^)]*?"([A-Z][A-Za-z]+)"', re.S),
    re.compile(r'^\s+"(Deleted)",$', re.M),
]


def reasons_in_code() -> set[str]:
    found: set[str] = set()
    for source in _SOURCES:
        path = ROOT / "secretsync" / source
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            text = file.read_text()
            for pattern in _PATTERNS:
                found.update(pattern.findall(text))
    return found - NOT_ON_OBJECTS


def reasons_in_readme() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Status reasons", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z]+)` \|", section, re.M))


def test_every_reason_is_documented() -> None:
    code = reasons_in_code()
    assert {"Unsealed", "Synced", "Deleted", "TargetMissing", "InvalidTemplate"} <= code
    assert code - reasons_in_readme() == set()


def test_the_table_lists_no_reason_the_code_never_sets() -> None:
    assert reasons_in_readme() - reasons_in_code() == set()
