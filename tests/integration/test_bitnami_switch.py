"""Switching a cluster from Bitnami's Sealed Secrets controller to ours.

Bitnami's real controller v0.36.6 (``sandbox/bitnami.py``) runs first, generates its key Secret
(``sealedsecrets.bitnami.com/sealed-secrets-key=active``) in its namespace and unseals one
SealedSecret; ``kubeseal`` v0.36.6 seals every SealedSecret here (``bitnami.com/v1alpha1``) with
the certificate Bitnami's controller serves. Bitnami's controller is then stopped, more
SealedSecrets are applied, and our controller starts with ``--bitnami-compat
--import-bitnami-keys`` and ``--controller-namespace`` = Bitnami's namespace, as its
ServiceAccount with the deploy/ RBAC installed in that namespace. Ours must unseal them with
Bitnami's key (without generating one of its own), take over the Secret Bitnami made, and never
log a value.

Missing binaries (kubeseal, Bitnami's controller) FAIL the tests: they never skip.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import bitnami
from sandbox.builder import BuildError
from sandbox.demo import ControllerProcess, apply_docs, render_kustomization
from secretsync import api
from secretsync.crypto import pem
from secretsync.keys import key_from_secret
from secretsync.kube import Kube
from tests.integration._controller import wait_for

pytestmark = pytest.mark.integration

SA = "secretsync-controller"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
              "RoleBinding"}
BG, BV, BP = bitnami.GROUP, bitnami.VERSION, bitnami.PLURAL
# (name, kubeseal --scope, values); the values are what no log may contain
SEALED: dict[str, tuple[str, dict[str, bytes]]] = {
    "before": ("strict", {"username": b"app-b4-switch", "password": b"b1tnami-unsealed-pw"}),
    "after": ("strict", {"username": b"app-after-switch", "token": b"0urs-unsealed-t0ken",
                         "unicode": "p\u00e4ss\u2713-x9".encode()}),
    "after-nsw": ("namespace-wide", {"api-key": b"nsw-sc0pe-v4lue-42"}),
}
PLAINTEXTS = [v.decode() for _, vals in SEALED.values() for v in vals.values()]


def decoded(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}


def kubeseal(binary: Path, cert: Path, name: str, namespace: str, scope: str,
             values: dict[str, bytes], tmp: Path) -> dict[str, Any]:
    """``kubeseal --cert`` offline (no cluster access), YAML out."""
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
              "data": {k: base64.b64encode(v).decode() for k, v in values.items()}}
    env = {**os.environ, "KUBECONFIG": str(tmp / "absent-kubeconfig")}
    out = subprocess.run(
        [str(binary), "--cert", str(cert), "--scope", scope, "--format", "yaml"],
        input=yaml.safe_dump(secret).encode(), capture_output=True, env=env, timeout=120,
    )
    assert out.returncode == 0, f"kubeseal failed: {out.stderr.decode(errors='replace')}"
    doc: dict[str, Any] = yaml.safe_load(out.stdout)
    assert doc["apiVersion"] == bitnami.API_VERSION and doc["kind"] == "SealedSecret"
    return doc


@dataclass
class Switched:
    kube: Kube
    app_ns: str
    keys_ns: str
    bitnami_key: dict[str, Any]  # Bitnami's key Secret
    before_uid: str  # uid of the Secret Bitnami's controller made
    sealed: dict[str, dict[str, Any]]  # name -> applied SealedSecret (as stored)
    ours: ControllerProcess
    controller_name: str


@pytest.fixture(scope="module")
def bitnami_bin() -> Path:
    try:
        return bitnami.ensure_controller()
    except BuildError as exc:
        pytest.fail(f"Bitnami's controller could not be built: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def switched(sandbox: Any, crds: list[str], kubeseal_bin: Path, bitnami_bin: Path,
             token_kubeconfig: Any, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Switched]:
    kube = Kube.from_config(str(sandbox.kubeconfig))
    tmp = tmp_path_factory.mktemp("bitnami-switch")
    tag = uuid.uuid4().hex[:6]
    app_ns, keys_ns = f"t-bswitch-{tag}", f"t-bkeys-{tag}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app_ns}})
    bitnami.install(kube, keys_ns)
    ours_docs = render_kustomization(namespace=keys_ns, suffix=f"-{tag}")
    apply_docs(kube, ours_docs, kinds=RBAC_KINDS)
    old = bitnami.BitnamiController(kube, sandbox.server, sandbox.ca_file, keys_ns,
                                    watch=[app_ns], binary=bitnami_bin,
                                    log_path=tmp / "bitnami.log")
    ours: ControllerProcess | None = None
    try:
        # --- Bitnami's era ---------------------------------------------------------------
        old.start()
        old.wait_ready(60)
        keys = kube.list_secrets(keys_ns, f"{bitnami.KEY_LABEL}=active")
        assert len(keys) == 1, f"Bitnami's controller made {len(keys)} key Secrets"
        cert = tmp / "bitnami-cert.pem"
        cert.write_bytes(old.cert_pem())
        sealed = {name: kubeseal(kubeseal_bin, cert, name, app_ns, scope, values, tmp)
                  for name, (scope, values) in SEALED.items()}
        kube.create_custom(BG, BV, BP, app_ns, sealed["before"])
        made = wait_for(lambda: kube.get_secret(app_ns, "before"), 60,
                        "Bitnami's controller to unseal 'before'")
        assert decoded(made) == SEALED["before"][1]
        old.stop()
        assert not old.alive()
        # --- the switch ------------------------------------------------------------------
        for name in ("after", "after-nsw"):
            kube.create_custom(BG, BV, BP, app_ns, sealed[name])
        time.sleep(1)
        assert kube.get_secret(app_ns, "after") is None  # nobody unsealed it yet
        kubeconfig = token_kubeconfig(keys_ns, SA, tmp / "ours.kubeconfig")
        ctl_name = f"secretsync-{tag}"
        ours = ControllerProcess(
            kubeconfig, controller_namespace=keys_ns, namespace=app_ns,
            log_path=tmp / "ours.log",
            extra=("--bitnami-compat", "--import-bitnami-keys", "--controller-name", ctl_name,
                   "--key-poll-interval", "1", "--retry-interval", "2"),
        ).start()
        ours.wait_ready(90)
        stored = {name: kube.get_custom(BG, BV, BP, app_ns, name) or {} for name in SEALED}
        yield Switched(kube, app_ns, keys_ns, keys[0], made["metadata"]["uid"], stored, ours,
                       ctl_name)
    finally:
        if ours is not None:
            ours.stop()
        old.stop()
        bitnami.uninstall_rbac(kube, keys_ns)
        for doc in ours_docs:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kube.delete_object(doc)
        for ns in (app_ns, keys_ns):
            kube.delete_object({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": ns}})
        kube.close()
    log = ours.log() if ours is not None else ""
    for value in PLAINTEXTS:
        assert value not in log, f"plaintext found in {ours.log_path if ours else ''}"
    assert "Traceback" not in log, f"traceback in our controller's log:\n{log[-3000:]}"


def test_ours_unseals_kubeseal_output_with_bitnamis_key(switched: Switched) -> None:
    kube, ns = switched.kube, switched.app_ns
    for name in ("after", "after-nsw"):
        secret = wait_for(lambda n=name: kube.get_secret(ns, n), 60,  # type: ignore[misc]
                          f"our controller to unseal {name!r}:\n{switched.ours.log()[-3000:]}")
        assert decoded(secret) == SEALED[name][1], name
        meta = secret["metadata"]
        assert meta.get("labels", {}).get(api.LABEL_MANAGED_BY) == api.MANAGED_BY_VALUE
        assert meta["labels"].get("app") == name  # kubeseal's template metadata carried over
        owner = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
        assert len(owner) == 1
        assert owner[0]["apiVersion"] == bitnami.API_VERSION
        assert owner[0]["kind"] == "SealedSecret" and owner[0]["name"] == name
        assert owner[0]["uid"] == switched.sealed[name]["metadata"]["uid"]


def test_ours_uses_bitnamis_key_and_makes_none(switched: Switched) -> None:
    kube, keys_ns = switched.kube, switched.keys_ns
    wait_for(lambda: kube.get_secret(switched.app_ns, "after"), 60, "'after' Secret")
    bitnami_fp = key_from_secret(switched.bitnami_key).fingerprint
    ours = kube.list_secrets(keys_ns, api.LABEL_SEALING_KEY)
    assert ours == [], f"our controller generated keys: {[s['metadata']['name'] for s in ours]}"
    bitnami_keys = kube.list_secrets(keys_ns, bitnami.KEY_LABEL)
    assert [s["metadata"]["name"] for s in bitnami_keys] == [
        switched.bitnami_key["metadata"]["name"]]
    # Bitnami's key Secret is read, never written (a switch back stays possible)
    assert (bitnami_keys[0]["metadata"]["resourceVersion"]
            == switched.bitnami_key["metadata"]["resourceVersion"])
    cm = wait_for(lambda: kube.get_configmap(keys_ns, f"{switched.controller_name}-cert"), 30,
                  "our cert ConfigMap")
    cert = pem.load_certificate_pem(cm["data"][api.CERT_CONFIGMAP_KEY].encode())
    assert pem.fingerprint(cert.public_key()) == bitnami_fp  # type: ignore[arg-type]


def test_ours_takes_over_the_secret_bitnami_made(switched: Switched) -> None:
    kube, ns = switched.kube, switched.app_ns
    adopted = wait_for(
        lambda: (s := kube.get_secret(ns, "before"))
        and (s["metadata"].get("labels") or {}).get(api.LABEL_MANAGED_BY) == api.MANAGED_BY_VALUE
        and s, 60, "our controller to take over Bitnami's Secret 'before'")
    assert adopted["metadata"]["uid"] == switched.before_uid  # updated in place, not replaced
    assert decoded(adopted) == SEALED["before"][1]
    kube.delete_secret(ns, "before")
    back = wait_for(lambda: (s := kube.get_secret(ns, "before"))
                    and s["metadata"]["uid"] != switched.before_uid and s, 60,
                    "our controller to restore the deleted Secret 'before'")
    assert decoded(back) == SEALED["before"][1]


def test_status_written_by_ours(switched: Switched) -> None:
    """Bitnami's controller never saw 'after' (it was stopped before 'after' was applied), so
    its status is ours; it carries no value."""
    kube, ns = switched.kube, switched.app_ns

    def synced() -> Any:
        obj = kube.get_custom(BG, BV, BP, ns, "after") or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Synced" and cond.get("status") == "True":
                return obj
        return None

    obj = wait_for(synced, 60, "status condition Synced=True on bitnami.com SealedSecret 'after'")
    text = json.dumps(obj["status"])
    for value in PLAINTEXTS:
        assert value not in text
