"""A kubeseal user's files work with only ``apiVersion`` changed (issue 21, item 11).

kubeseal v0.36.6 writes ``spec.template.metadata.name`` and ``.namespace`` (older versions
also ``creationTimestamp: null``). Our CRD must accept what Bitnami's accepts there, under the
API server's *strict* field validation (what ``kubectl apply`` uses by default), and the
controller must unseal the object. A template name or namespace that contradicts the
SealedSecret's own is ignored, as Bitnami's controller does: the Secret always takes the
SealedSecret's name and namespace (the OAEP label binds those, not the template's).
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from secretsync import api
from secretsync.kube import Kube
from tests.integration.test_sealed_controller import Start, wait_condition
from tests.keypairs import keypair

pytestmark = pytest.mark.integration
VALUE = b"kubeseal-file-s3cret"


def kubeseal(kubeseal_bin: Path, tmp_path: Path, name: str, namespace: str) -> dict[str, Any]:
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
              "data": {"password": base64.b64encode(VALUE).decode()}}
    proc = subprocess.run(
        [str(kubeseal_bin), "--cert", str(keypair(0).cert_path), "--format", "yaml"],
        input=yaml.safe_dump(secret).encode(), capture_output=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "absent")},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    doc: dict[str, Any] = yaml.safe_load(proc.stdout)
    return doc


def create_strict(kube: Kube, doc: dict[str, Any]) -> dict[str, Any]:
    ns = doc["metadata"]["namespace"]
    return kube.request(
        "POST", f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{ns}/{api.PLURAL_SEALED}", doc,
        query={"fieldValidation": "Strict"}, what="create SealedSecret (strict validation)")


def test_kubeseal_files_apply_with_only_the_api_version_changed(
    kube: Kube, namespace: str, start_controller: Start, kubeseal_bin: Path, tmp_path: Path
) -> None:
    plain = kubeseal(kubeseal_bin, tmp_path, "ks-plain", namespace)
    tmeta = plain["spec"]["template"]["metadata"]
    assert tmeta["name"] == "ks-plain" and tmeta["namespace"] == namespace  # the premise
    older = kubeseal(kubeseal_bin, tmp_path, "ks-older", namespace)
    older["spec"]["template"]["metadata"]["creationTimestamp"] = None
    older["metadata"]["creationTimestamp"] = None
    moved = kubeseal(kubeseal_bin, tmp_path, "ks-moved", namespace)
    moved["spec"]["template"]["metadata"].update(name="elsewhere", namespace="kube-system")

    ctl = start_controller()
    for doc in (plain, older, moved):
        doc["apiVersion"] = api.API_VERSION
        create_strict(kube, doc)
    for name in ("ks-plain", "ks-older", "ks-moved"):
        wait_condition(kube, namespace, name, "True", "Unsealed")
        secret = kube.get_secret(namespace, name)
        assert secret is not None
        assert base64.b64decode(secret["data"]["password"]) == VALUE
        assert secret["metadata"]["labels"]["app"] == name
    assert kube.get_secret("kube-system", "elsewhere") is None
    assert kube.get_secret(namespace, "elsewhere") is None
    assert VALUE.decode() not in ctl.log()
