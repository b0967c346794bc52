"""``secretsync fetch-cert`` and ``seal`` without ``--cert`` against the sandbox's real
kube-apiserver: the certificate comes from ConfigMap ``<controller-name>-cert``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from secretsync import api
from tests.cli.conftest import SCRIPT
from tests.keypairs import keypair

pytestmark = pytest.mark.integration

SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: app}\nstringData: {a: b}\n"


def _cli(
    *args: str | Path, env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def published(k8s: Any, namespace: str) -> str:
    """A ConfigMap like the controller's, holding test key 0's certificate."""
    from kubernetes import client

    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"my-ctl{api.CERT_CONFIGMAP_SUFFIX}"),
        data={api.CERT_CONFIGMAP_KEY: keypair(0).cert_path.read_text()},
    )
    client.CoreV1Api(k8s).create_namespaced_config_map(namespace, body)
    return namespace


def test_fetch_cert_and_seal_from_cluster(sandbox: Any, published: str, tmp_path: Path) -> None:
    ns = published
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    where = ["--controller-namespace", ns, "--controller-name", "my-ctl"]

    res = _cli("fetch-cert", *where, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == keypair(0).cert_path.read_text()

    # explicit --kubeconfig wins over $KUBECONFIG
    bad_env = {**os.environ, "KUBECONFIG": str(tmp_path / "nope")}
    out = tmp_path / "cert.pem"
    res = _cli("fetch-cert", "--kubeconfig", sandbox.kubeconfig, *where, "-w", out, env=bad_env)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == keypair(0).cert_path.read_text()
    assert keypair(0).fingerprint in res.stderr

    sealed = _cli("seal", *where, env=env, stdin=SECRET)
    assert sealed.returncode == 0, sealed.stderr
    doc = yaml.safe_load(sealed.stdout)
    assert doc["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == keypair(0).fingerprint
    back = _cli("unseal", "--private-key", keypair(0).key_path, env=env, stdin=sealed.stdout)
    assert back.returncode == 0, back.stderr


def test_fetch_cert_errors(sandbox: Any, published: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)}
    missing = _cli(
        "fetch-cert", "--controller-namespace", published, "--controller-name", "x", env=env
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"secretsync: error: ConfigMap {published}/x-cert not found")
    assert len(missing.stderr.strip().splitlines()) == 1

    ctx = _cli("fetch-cert", "--context", "no-such-context", env=env)
    assert ctx.returncode == 1 and "no-such-context" in ctx.stderr and "Traceback" not in ctx.stderr
