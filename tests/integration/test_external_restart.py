"""Controller restart: objects that were in sync are not all re-fetched at once (each waits
for its own refresh slot — the restart jitter); a Secret edited while the controller was down
is noticed from its hash alone and repaired at once; nothing else is written."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import CONTROLLER_NS, Controller, install_rbac
from tests.integration._external import (
    MARK,
    controller_kubeconfig,
    hash_key_secret,
    sandbox_world,
)

pytestmark = pytest.mark.integration


def test_restart_repairs_offline_drift_without_refetching_everything(
    sandbox: Any,
    k8s: Any,
    crds: list[str],
    namespace: str,
    vault_mount: str,
    tmp_path: Path,
    token_kubeconfig: Any,
) -> None:
    install_rbac(k8s)
    admin = Kube.from_config(str(sandbox.kubeconfig))
    w = sandbox_world(sandbox, admin, namespace, vault_mount, tmp_path)
    kubeconfig = controller_kubeconfig(w, token_kubeconfig)
    w.apply_store()
    n = 6
    for i in range(n):
        w.put(f"k{i}", {"v": f"v{i}-{MARK}"})
        w.apply_es(
            f"es{i}",
            {
                "refreshInterval": "1h",
                "data": [{"secretKey": "v", "remoteRef": {"key": f"k{i}", "property": "v"}}],
            },
        )
    first = Controller(kubeconfig, namespace, tmp_path / "first.log").start()
    w.controller = first
    key_name = hash_key_secret(first)
    try:
        for i in range(n):
            w.wait_ready(f"es{i}")
            w.wait_data(f"es{i}", {"v": f"v{i}-{MARK}".encode()})
    finally:
        first.stop()
    w.assert_no_leak()
    key_secret = admin.get_secret(CONTROLLER_NS, key_name)
    assert key_secret is not None, "the data-hash key Secret is created at startup"
    key = key_secret["data"][api.HASH_KEY_DATA_KEY]
    rv_es = {i: w.es(f"es{i}")["metadata"]["resourceVersion"] for i in range(n)}
    rv_s = {i: w.secret(f"es{i}")["metadata"]["resourceVersion"] for i in range(n)}  # type: ignore[index]
    w.kube.patch_secret(namespace, "es0", {"data": {"v": base64.b64encode(b"offline").decode()}})

    # the same controller restarted (same name: same Lease, cert ConfigMap, hash key)
    second = Controller(kubeconfig, namespace, tmp_path / "second.log", name=first.name).start()
    w.controller = second
    try:
        w.wait_data("es0", {"v": f"v0-{MARK}".encode()}, timeout=15)
        time.sleep(2)
        gets = second.metric("secretsync_backend_calls_total", backend="vault", operation="get")
        assert gets == 1, f"only the drifted object is re-fetched at start, got {gets}"
        for i in range(1, n):
            assert w.secret(f"es{i}")["metadata"]["resourceVersion"] == rv_s[i]  # type: ignore[index]
            assert w.es(f"es{i}")["metadata"]["resourceVersion"] == rv_es[i]
        w.assert_no_leak()
        # the key was read, not regenerated: the Secret is untouched, so are the hashes
        again = admin.get_secret(CONTROLLER_NS, key_name)
        assert again is not None and again["data"][api.HASH_KEY_DATA_KEY] == key
        assert again["metadata"]["resourceVersion"] == key_secret["metadata"]["resourceVersion"]
    finally:
        second.stop()
        admin.delete_secret(CONTROLLER_NS, key_name)
