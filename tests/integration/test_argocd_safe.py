"""Argo CD with ``prune: true`` and ``selfHeal``: what the controller writes never fights it.

Argo CD marks what it applied with a tracking label (``app.kubernetes.io/instance``) or
annotation (``argocd.argoproj.io/tracking-id``); a resource carrying them that is not in Git is
pruned or shown OutOfSync. So the Secret made from a SealedSecret or ExternalSecret must not
inherit them from its parent (unless the parent's template sets them on purpose), and the
controller must write nothing on the parent but ``.status``: no defaulted field, finalizer,
label or annotation Argo CD would diff against Git. Applied here the way Argo CD applies
(server-side apply under its field manager), then re-applied: a second identical apply changes
nothing, as a sync with no diff must.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import wait_for
from tests.integration._external import World, running_controller, sandbox_world
from tests.integration.test_external_sync import admin  # noqa: F401  (fixture)
from tests.integration.test_sealed_controller import (  # noqa: F401  (fixtures)
    G,
    P,
    Start,
    V,
    ctl_ns,
    kube,
    sa_kubeconfig,
    seal,
    start_controller,
    wait_condition,
)

pytestmark = pytest.mark.integration

ARGO_MANAGER = "argocd-controller"
TRACKING_LABEL = "app.kubernetes.io/instance"
TRACKING_ANN = "argocd.argoproj.io/tracking-id"


def tracked(doc: dict[str, Any], app: str) -> dict[str, Any]:
    """``doc`` as Argo CD applies it for Application ``app`` (both tracking methods)."""
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    meta.setdefault("labels", {})[TRACKING_LABEL] = app
    ns, name = meta.get("namespace", ""), meta["name"]
    group = doc["apiVersion"].split("/")[0]
    meta.setdefault("annotations", {})[TRACKING_ANN] = f"{app}:{group}/{doc['kind']}:{ns}/{name}"
    return doc


def not_tracked(secret: dict[str, Any]) -> None:
    meta = secret["metadata"]
    assert TRACKING_LABEL not in (meta.get("labels") or {}), meta.get("labels")
    assert TRACKING_ANN not in (meta.get("annotations") or {}), meta.get("annotations")


def subset(part: Any, whole: Any, where: str = "spec") -> None:
    """Every field of ``part`` is in ``whole`` with the same value (Argo CD's client-side
    diff ignores fields only the live object has, like the CRD's schema defaults)."""
    if isinstance(part, dict):
        assert isinstance(whole, dict), where
        for k, v in part.items():
            assert k in whole, f"{where}.{k} missing"
            subset(v, whole[k], f"{where}.{k}")
    elif isinstance(part, list):
        assert isinstance(whole, list) and len(part) == len(whole), where
        for i, (a, b) in enumerate(zip(part, whole, strict=True)):
            subset(a, b, f"{where}[{i}]")
    else:
        assert part == whole, where


def only_status_is_ours(live: dict[str, Any], applied: dict[str, Any]) -> None:
    """The parent as Argo CD left it: its spec (plus the API server's schema defaults),
    labels and annotations, no finalizer, and every field manager but Argo CD's touched
    ``.status`` only."""
    meta = live["metadata"]
    subset(applied["spec"], live["spec"])
    assert meta.get("labels") == applied["metadata"].get("labels")
    assert meta.get("annotations") == applied["metadata"].get("annotations")
    assert not meta.get("finalizers")
    assert meta["generation"] == 1
    for entry in meta.get("managedFields") or []:
        if entry["manager"] == ARGO_MANAGER:
            continue
        assert entry.get("subresource") == "status", entry
        assert set(entry.get("fieldsV1") or {}) <= {"f:status"}, entry


def reapply_changes_nothing(client: Kube, doc: dict[str, Any], plural: str) -> None:
    """A second sync with no diff: Argo CD's server-side diff (a dry-run apply) equals the
    live object, and the apply itself is a no-op."""
    ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
    before = client.get_custom(G, V, plural, ns, name)
    assert before is not None
    dry = client.apply(doc, field_manager=ARGO_MANAGER, plural=plural, dry_run=True)
    for key in ("spec", "status"):
        assert dry.get(key) == before.get(key), key
    for key in ("labels", "annotations", "finalizers", "generation"):
        assert dry["metadata"].get(key) == before["metadata"].get(key), key
    after = client.apply(doc, field_manager=ARGO_MANAGER, plural=plural)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_sealed_secret_under_argocd(kube: Kube, namespace: str,  # noqa: F811
                                    start_controller: Start) -> None:  # noqa: F811
    start_controller()
    plain = tracked(seal("db", namespace), "payments-dev")
    explicit = seal("explicit", namespace, labels={TRACKING_LABEL: "chosen-by-template"})
    for doc in (plain, tracked(explicit, "payments-dev")):
        kube.apply(doc, field_manager=ARGO_MANAGER, plural=P)
    for name in ("db", "explicit"):
        wait_condition(kube, namespace, name, "True", "Unsealed")
    not_tracked(wait_for(lambda: kube.get_secret(namespace, "db"), what="Secret db"))
    chosen = kube.get_secret(namespace, "explicit")
    assert chosen is not None
    assert chosen["metadata"]["labels"][TRACKING_LABEL] == "chosen-by-template"
    live = kube.get_custom(G, V, P, namespace, "db")
    assert live is not None
    only_status_is_ours(live, plain)
    reapply_changes_nothing(kube, plain, P)


@pytest.fixture
def world(sandbox: Any, admin: Kube, namespace: str,  # noqa: F811
          vault_mount: str, tmp_path: Path, token_kubeconfig: Any) -> Iterator[World]:
    w = sandbox_world(sandbox, admin, namespace, vault_mount, tmp_path)
    with running_controller(w, token_kubeconfig, before_start=w.apply_store):
        yield w


def test_external_secret_under_argocd(world: World) -> None:
    w = world
    w.put("db", {"password": "pw-not-a-secret"})
    doc = tracked({
        "apiVersion": api.API_VERSION, "kind": api.KIND_EXTERNAL,
        "metadata": {"name": "app", "namespace": w.namespace},
        "spec": {"secretStoreRef": {"name": "vault"}, "refreshInterval": "1h",
                 "target": {"name": "app-secret"},
                 "data": [{"secretKey": "pw", "remoteRef": {"key": "db",
                                                            "property": "password"}}]},
    }, "payments-dev")
    w.kube.apply(doc, field_manager=ARGO_MANAGER, plural=api.PLURAL_EXTERNAL)
    w.wait_ready("app")
    not_tracked(wait_for(lambda: w.kube.get_secret(w.namespace, "app-secret"),
                         what="Secret app-secret"))
    only_status_is_ours(w.es("app"), doc)
    reapply_changes_nothing(w.kube, doc, api.PLURAL_EXTERNAL)
