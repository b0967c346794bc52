"""The real ``helm`` CLI (``helm.sh/helm/v4``, built into the sandbox cache like kubectl) on
the chart in ``deploy/chart/secretsync``, and the objects it renders set against
``kubectl kustomize deploy/``.

Helm runs with its config, cache and data directories in a temporary directory, so the
tests neither read nor write the user's Helm repositories or plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import builder

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "chart" / "secretsync"
DEPLOY = REPO / "deploy"

Obj = dict[str, Any]
ObjKey = tuple[str, str, str]  # kind, namespace ("" when cluster-scoped), name


def built(ensure: Any, what: str) -> Path:
    """A sandbox binary, built into the cache on first use; a build failure FAILS the test."""
    try:
        path: Path = ensure()
        return path
    except (builder.BuildError, OSError) as exc:  # OSError: no `go` on PATH, say
        failure = f"{what} could not be built: {exc}"
    pytest.fail(failure, pytrace=False)


class Helm:
    """``helm`` with private HELM_* homes and, when given, the sandbox's kubeconfig."""

    def __init__(self, binary: Path, home: Path, kubeconfig: Path | None = None) -> None:
        self.binary = binary
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        for var, sub in (("HELM_CONFIG_HOME", "config"), ("HELM_CACHE_HOME", "cache"),
                         ("HELM_DATA_HOME", "data")):
            self.env[var] = str(home / sub)
        self.env.pop("KUBECONFIG", None)
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)
        self.home = home

    def run(self, *args: str | Path, check: bool = True,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.binary), *map(str, args)], capture_output=True,
                              text=True, env=self.env, timeout=timeout)
        if check and done.returncode != 0:
            pytest.fail(f"helm {' '.join(map(str, args[:2]))} failed ({done.returncode}):\n"
                        f"{done.stderr}{done.stdout[-2000:]}", pytrace=False)
        return done

    def values_file(self, values: Obj, name: str = "values.yaml") -> Path:
        path = self.home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values))
        return path

    def template(self, values: Obj | None = None, *, release: str = "secretsync",
                 namespace: str = "secretsync", extra: tuple[str, ...] = ()) -> list[Obj]:
        args: list[str | Path] = ["template", release, CHART, "--namespace", namespace, *extra]
        if values is not None:
            args += ["-f", self.values_file(values)]
        return documents(self.run(*args).stdout)


def documents(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_key(docs: list[Obj]) -> dict[ObjKey, Obj]:
    """Objects by (kind, namespace, name); a duplicate key is an error, not a silent loss."""
    out: dict[ObjKey, Obj] = {}
    for d in docs:
        meta = d["metadata"]
        key = (d["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in out, f"rendered twice: {key}"
        out[key] = d
    return out


def kustomize(kubectl: Path) -> list[Obj]:
    """``kubectl kustomize deploy/``: what ``kubectl apply -k deploy/`` would apply."""
    done = subprocess.run([str(kubectl), "kustomize", str(DEPLOY)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return documents(done.stdout)


def kubectl_json(kubectl: Path, kubeconfig: Path, *args: str) -> Obj:
    done = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: Obj = json.loads(done.stdout)
    return result


def container(docs: list[Obj]) -> Obj:
    dep = next(d for d in docs if d["kind"] == "Deployment")
    (ctr,) = dep["spec"]["template"]["spec"]["containers"]
    result: Obj = ctr
    return result
