"""deploy/argocd: the generated argocd-cm patch and Helm values carry exactly the health script.

``health.lua`` is the source; ``generate.py`` writes it once per kind (its condition set) into
``argocd-cm.yaml`` and ``health-checks.values.yaml``. A script edited without regenerating (or
a hand edit of the YAML) fails here. The scripts' behaviour is tested in Argo CD's own Lua VM
against live objects (``tests/integration/test_argocd_health.py``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from secretsync import api

ARGOCD = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
PREFIX = "resource.customizations.health."
KINDS = (api.KIND_SEALED, api.KIND_EXTERNAL, api.KIND_STORE, api.KIND_CLUSTER_STORE,
         api.KIND_CLUSTER_EXTERNAL)


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("argocd_generate", ARGOCD / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lua_files() -> dict[str, str]:
    scripts: dict[str, str] = generator().scripts()
    return scripts


def test_each_kind_reads_its_own_condition() -> None:
    source = (ARGOCD / "health.lua").read_text()
    for key, script in lua_files().items():
        want = "Synced" if key.endswith(f"_{api.KIND_SEALED}") else "Ready"
        assert f'local CONDITION = "{want}"' in script
        assert script.replace(f'local CONDITION = "{want}"', 'local CONDITION = "Ready"') == source


def test_one_script_per_kind_named_as_argo_cd_looks_it_up() -> None:
    assert set(lua_files()) == {f"{PREFIX}{api.GROUP}_{kind}" for kind in KINDS}


def test_configmap_patch_equals_the_lua_files() -> None:
    doc = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "ConfigMap")
    assert doc["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert doc["data"] == lua_files()


def test_helm_values_equal_the_lua_files() -> None:
    doc = yaml.safe_load((ARGOCD / "health-checks.values.yaml").read_text())
    assert doc == {"configs": {"cm": lua_files()}}


def test_generator_reports_no_drift() -> None:
    out = subprocess.run([sys.executable, str(ARGOCD / "generate.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
