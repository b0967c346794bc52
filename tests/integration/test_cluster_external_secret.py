"""ClusterExternalSecret against the sandbox: labelling a namespace gives it an ExternalSecret
(and the Secret, from OpenBao); unlabelling removes it; an ExternalSecret of the same name
that it does not own is left untouched and its namespace reported in ``failedNamespaces``;
a quiet period writes nothing; no value reaches logs, Events or statuses; Argo CD's health
(the argocd-cm script, in its Lua VM) follows the Ready condition.

The controller runs as in every integration test, watching one namespace (tests run in
parallel, each with its own controller): so the selected namespace is that one, and another
selected namespace outside its sight gets nothing from it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import install_rbac
from tests.integration._external import MARK, World, running_controller, sandbox_world, wait_for
from tests.integration.test_argocd_health import (  # noqa: F401  (fixtures)
    Health,
    expect,
    harness,
    health,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def world(sandbox: Any, k8s: Any, crds: list[str], namespace: str, vault_mount: str,
          tmp_path: Path, token_kubeconfig: Any) -> Iterator[World]:
    install_rbac(k8s)
    admin = Kube.from_config(str(sandbox.kubeconfig))
    w = sandbox_world(sandbox, admin, namespace, vault_mount, tmp_path)
    with running_controller(w, token_kubeconfig):
        yield w


@pytest.fixture
def names(world: World) -> Iterator[dict[str, str]]:
    """Unique names of the cluster-scoped objects (and the selecting label), removed after."""
    tag = uuid.uuid4().hex[:8]
    out = {"store": f"css-{tag}", "ces": f"ces-{tag}", "label": f"ces-test-{tag}"}
    yield out
    world.kube.delete_custom(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_EXTERNAL, None,
                             out["ces"])
    world.kube.delete_custom(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_STORE, None,
                             out["store"])


def label(w: World, namespace: str, key: str, value: str | None) -> None:
    w.kube.request("PATCH", f"/api/v1/namespaces/{namespace}",
                   {"metadata": {"labels": {key: value}}},
                   content_type="application/merge-patch+json")


def ces_obj(w: World, name: str) -> dict[str, Any]:
    obj = w.kube.get_custom(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_EXTERNAL, None, name)
    assert obj is not None
    return obj


def es_or_none(w: World, name: str) -> dict[str, Any] | None:
    return w.kube.get_custom(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, w.namespace, name)


def rv(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


def test_cluster_external_secret_follows_namespace_labels(
        world: World, names: dict[str, str], namespace: str,
        health: Health,  # noqa: F811  (the imported fixture)
) -> None:
    w = world
    assert w.controller is not None
    w.put("shared/db", {"password": f"pw-{MARK}"})
    w.apply_store(names["store"], cluster=True)
    sel = names["label"]
    w.kube.apply({
        "apiVersion": api.API_VERSION, "kind": api.KIND_CLUSTER_EXTERNAL,
        "metadata": {"name": names["ces"]},
        "spec": {
            "externalSecretName": "db",
            "externalSecretMetadata": {"labels": {"from": "ces"}},
            "namespaceSelectors": [{"matchLabels": {sel: "yes"}}],
            "refreshTime": "1h",
            "externalSecretSpec": {
                "secretStoreRef": {"name": names["store"], "kind": "ClusterSecretStore"},
                "target": {"name": "db-creds"},
                "data": [{"secretKey": "password",
                          "remoteRef": {"key": "shared/db", "property": "password"}}],
            },
        },
    }, plural=api.PLURAL_CLUSTER_EXTERNAL)
    # a selected namespace outside this controller's sight gets nothing from it
    other = f"{namespace[:40]}-o"
    w.kube.apply({"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": other, "labels": {sel: "yes"}}})
    try:
        time.sleep(2)
        assert es_or_none(w, "db") is None, "not selected yet"
        assert w.kube.get_custom(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, other, "db") is None
    finally:
        w.kube.delete_object({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": other}})

    # label the namespace: the ExternalSecret appears, owned, and its Secret is synced
    label(w, namespace, sel, "yes")
    es = wait_for("ExternalSecret db", lambda: es_or_none(w, "db"))
    owner = es["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        api.KIND_CLUSTER_EXTERNAL, names["ces"], True)
    assert es["metadata"]["labels"] == {"from": "ces"}
    w.wait_ready("db")
    w.wait_data("db-creds", {"password": f"pw-{MARK}".encode()})
    status = wait_for("provisioned status", lambda: (
        ces_obj(w, names["ces"]).get("status") or {}).get("provisionedNamespaces"))
    assert status == [namespace]
    cond = ces_obj(w, names["ces"])["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Ready", "True", "Provisioned")
    expect(health, ces_obj(w, names["ces"]), "Healthy", condition=("True", "Provisioned"))

    # no churn: a quiet period changes no resourceVersion
    before = (rv(ces_obj(w, names["ces"])), rv(es_or_none(w, "db")), rv(w.secret("db-creds")))
    time.sleep(6)
    after = (rv(ces_obj(w, names["ces"])), rv(es_or_none(w, "db")), rv(w.secret("db-creds")))
    assert before == after

    # an edit of the owned ExternalSecret is put back
    w.kube.patch_custom(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, namespace, "db",
                        {"metadata": {"labels": {"from": "someone"}}})
    wait_for("labels restored", lambda: (es_or_none(w, "db") or {}).get(
        "metadata", {}).get("labels") == {"from": "ces"})

    # unlabel: the ExternalSecret is removed (and its Secret with it, by its owner reference)
    label(w, namespace, sel, None)
    wait_for("ExternalSecret db removed", lambda: es_or_none(w, "db") is None)
    wait_for("status without the namespace", lambda: not (
        ces_obj(w, names["ces"]).get("status") or {}).get("provisionedNamespaces"))

    # a foreign ExternalSecret of that name: untouched, the namespace reported as failed
    foreign = w.apply_es("db", {
        "secretStoreRef": {"name": names["store"], "kind": "ClusterSecretStore"},
        "target": {"name": "mine"},
        "data": [{"secretKey": "p", "remoteRef": {"key": "shared/db", "property": "password"}}],
    })
    label(w, namespace, sel, "yes")
    failed = wait_for("failedNamespaces", lambda: (
        ces_obj(w, names["ces"]).get("status") or {}).get("failedNamespaces"))
    assert [f["namespace"] for f in failed] == [namespace]
    assert "not owned" in failed[0]["reason"]
    cond = ces_obj(w, names["ces"])["status"]["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "NamespacesFailed")
    expect(health, ces_obj(w, names["ces"]), "Degraded", condition=("False", "NamespacesFailed"))
    time.sleep(2)
    now = es_or_none(w, "db")
    assert now is not None and now["spec"] == foreign["spec"]
    assert not now["metadata"].get("ownerReferences") and not now["metadata"].get("labels")

    # the foreign one gone, ours takes its place; deleting the ClusterExternalSecret removes
    # its ExternalSecrets (owner references: the API server's garbage collector)
    w.kube.delete_custom(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, namespace, "db")
    wait_for("ours in place", lambda: (es_or_none(w, "db") or {}).get(
        "metadata", {}).get("labels") == {"from": "ces"})
    wait_for("recovered", lambda: not (
        ces_obj(w, names["ces"]).get("status") or {}).get("failedNamespaces"))
    w.wait_ready("db")
    assert MARK not in repr(ces_obj(w, names["ces"]).get("status"))
    w.kube.delete_custom(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_EXTERNAL, None, names["ces"])
    wait_for("ExternalSecret collected", lambda: es_or_none(w, "db") is None, timeout=60)

    # nothing of the values anywhere: the controller log, Events and statuses are checked by
    # running_controller, the ClusterExternalSecret's status above
    assert "Traceback" not in w.controller.log()
