"""REST paths of the objects we read and write, and the content type of a patch.

Why this exists: the typed calls of ``client`` and the server-side apply of whole manifests
(install helpers, demo, tests) address objects the same way; keeping the path rules (core vs
group APIs, namespaced vs cluster-scoped, the built-in kinds we apply) in one pure table means
a kind is spelt once, and the rules are testable without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from secretsync.errors import KubeInvalid

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# kind -> (api prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Service": ("/api/v1", "services", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
}


def object_path(doc: Mapping[str, Any], plural: str | None = None) -> str:
    """The REST path of a manifest's object (built-in kinds, or any kind given ``plural``)."""
    kind = str(doc.get("kind"))
    meta = doc.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if kind in KINDS and plural is None:
        prefix, plural_, namespaced = KINDS[kind]
    elif plural is not None:
        api_version = str(doc.get("apiVersion"))
        prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        plural_, namespaced = plural, bool(namespace)
    else:
        raise KubeInvalid(f"don't know the REST path of kind {kind!r}; pass plural=")
    if namespaced:
        if not namespace:
            raise KubeInvalid(f"{kind} {name} needs metadata.namespace")
        return f"{prefix}/namespaces/{namespace}/{plural_}/{name}"
    return f"{prefix}/{plural_}/{name}"


def core(namespace: str | None, plural: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{namespace}/{plural}" if namespace else f"/api/v1/{plural}"
    return f"{path}/{name}" if name else path


def custom(
    group: str, version: str, plural: str, namespace: str | None, name: str | None = None
) -> str:
    base = f"/apis/{group}/{version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def lease(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{path}/{name}" if name else path


def workload(namespace: str, kind: str, name: str) -> str:
    """A Deployment, StatefulSet or DaemonSet (apps/v1); another kind is a ``KeyError``."""
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets",
              "DaemonSet": "daemonsets"}[kind]
    return f"/apis/apps/v1/namespaces/{namespace}/{plural}/{name}"


def patch_body(patch: Mapping[str, Any] | list[Any]) -> Any:
    return patch if isinstance(patch, list) else dict(patch)


def patch_type(patch: Mapping[str, Any] | list[Any]) -> str:
    # A list is a JSON patch (RFC 6902, e.g. with a resourceVersion "test"), a dict an RFC 7386
    # merge patch (``None`` deletes a key) -- explicit, so behaviour never depends on the kind.
    return JSON_PATCH if isinstance(patch, list) else MERGE
