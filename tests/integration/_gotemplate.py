"""A client for the Go reference harness (sandbox/gotemplate_harness): renders batches of
templates with ESO's real engine, one process per batch, cases as JSON lines."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    out: bytes | None  # None: the render failed
    err: str | None


def go_render_many(binary: Path, cases: Sequence[tuple[bytes, Mapping[str, bytes]]],
                   timeout: float = 120) -> list[Outcome]:
    lines = [json.dumps({"tpl": base64.b64encode(tpl).decode(),
                         "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})
             for tpl, data in cases]
    proc = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=timeout, check=True)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(cases), proc.stderr[-2000:]
    return [Outcome(base64.b64decode(r["out"]) if "out" in r else None, r.get("err"))
            for r in results]


def py_render(tpl: bytes, data: Mapping[str, bytes]) -> Outcome:
    from secretsync.errors import InvalidTemplate
    from secretsync.reconcile.gotemplate import render

    try:
        return Outcome(render(tpl, data), None)
    except InvalidTemplate as exc:
        return Outcome(None, str(exc))
