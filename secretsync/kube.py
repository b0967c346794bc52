"""The only module that talks to the Kubernetes API.

Thin, typed, synchronous wrappers over the official ``kubernetes`` client. Objects go in and
come out as plain JSON dicts (camelCase, exactly what the API server sends), so the pure
``reconcile`` layer never sees client model classes. ``ApiException`` is translated here into
the ``KubeError`` family (404 -> ``None`` for reads, ``KubeNotFound`` for writes); error texts
carry the API server's status message, never request bodies (which may hold secret data).

The controller calls these from ``asyncio.to_thread``; the CLI calls them directly.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secretsync.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
)

Obj = dict[str, Any]

_IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True)
class Connection:
    """What a second client (kopf, aiohttp) needs to reach the same API server as we do."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    cert_path: str | None
    key_path: str | None
    namespace: str | None


def _translate(exc: Exception, what: str) -> KubeError:
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        return KubeError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
    status = int(exc.status or 0)
    message = exc.reason or ""
    try:
        body = json.loads(exc.body or b"{}")
        message = str(body.get("message") or message)
    except (ValueError, TypeError, AttributeError):
        pass
    text = f"{what}: {message[:300]}" if message else f"{what}: HTTP {status}"
    if status == 404:
        return KubeNotFound(text, status=status)
    if status == 409:
        return KubeConflict(text, status=status)
    if status in (401, 403):
        return KubeForbidden(text, status=status)
    if status in (400, 422):
        return KubeInvalid(text, status=status)
    return KubeError(text, status=status)


def _load(resp: Any) -> Obj:
    data = resp.data
    if not data:
        return {}
    result: Obj = json.loads(data)
    return result


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Kube:
    """A connected client. Build with :meth:`from_config`; cheap to share between threads."""

    def __init__(self, api_client: Any, *, namespace: str | None = None) -> None:
        self.api_client = api_client
        self.default_namespace = namespace or "default"

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """Connect like kubectl: an explicit kubeconfig, else ``$KUBECONFIG``, else
        ``~/.kube/config``, else the in-cluster ServiceAccount."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        default_path = os.path.expanduser("~/.kube/config")
        if path is None and os.path.exists(default_path):
            path = default_path
        try:
            if path is not None:
                cfg = client.Configuration()
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=path, context=context, client_configuration=cfg
                )
                namespace = _kubeconfig_namespace(path, context)
            elif os.path.exists(_IN_CLUSTER_TOKEN):
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                namespace = _incluster_namespace()
            else:
                raise KubeError(
                    "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, "
                    "or create ~/.kube/config"
                )
        except (ConfigException, OSError, ValueError) as exc:
            raise KubeError(f"cannot load kubeconfig {path or '(in-cluster)'}: {exc}") from exc
        # Controllers call the API from many threads at once (asyncio.to_thread); a pool smaller
        # than that discards connections and pays a TLS handshake per request.
        cfg.connection_pool_maxsize = max(int(cfg.connection_pool_maxsize or 0), 64)
        return cls(client.ApiClient(cfg), namespace=namespace)

    def connection(self) -> Connection:
        cfg = self.api_client.configuration
        token: str | None = None
        auth = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        if auth:
            token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else auth
        return Connection(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            token=token,
            cert_path=cfg.cert_file,
            key_path=cfg.key_file,
            namespace=self.default_namespace,
        )

    def close(self) -> None:
        self.api_client.close()

    # --- raw JSON calls ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        what: str | None = None,
    ) -> Obj:
        """One JSON request to ``path`` (e.g. ``/api/v1/namespaces``) with our credentials.

        Bodies are plain dicts (no client model classes), so what we send is exactly what we
        built and what we get back is exactly what the API server sent."""
        try:
            param = self.api_client.param_serialize(
                method=method,
                resource_path=path,
                query_params=[(k, v) for k, v in (query or {}).items() if v],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            resp = self.api_client._call_with_legacy_options(param, {}, None, False, None, True)
            return _load(resp)
        except Exception as exc:
            raise _translate(exc, what or f"{method} {path}") from exc

    def _get_or_none(self, path: str, what: str) -> Obj | None:
        try:
            return self.request("GET", path, what=what)
        except KubeNotFound:
            return None

    def _patch(self, path: str, patch: Mapping[str, Any] | list[Any], what: str) -> Obj:
        return self.request(
            "PATCH", path, _patch_body(patch), content_type=_patch_type(patch), what=what
        )

    # --- Secrets -------------------------------------------------------------------------

    def get_secret(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none(_core(namespace, "secrets", name),
                                 f"get Secret {namespace}/{name}")

    def read_secret_key(self, namespace: str, name: str, key: str) -> bytes | None:
        """One decoded value of a Secret; None when the Secret or the key is missing."""
        import base64

        secret = self.get_secret(namespace, name)
        if secret is None:
            return None
        value = (secret.get("data") or {}).get(key)
        if value is None:
            return None
        return base64.b64decode(value)

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        name = body.get("metadata", {}).get("name", "?")
        return self.request("POST", _core(namespace, "secrets"), dict(body),
                            what=f"create Secret {namespace}/{name}")

    def replace_secret(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        return self.request("PUT", _core(namespace, "secrets", name), dict(body),
                            what=f"replace Secret {namespace}/{name}")

    def patch_secret(
        self, namespace: str, name: str, patch: Mapping[str, Any] | list[Any]
    ) -> Obj:
        """Merge patch (a dict) or JSON patch (a list)."""
        return self._patch(_core(namespace, "secrets", name), patch,
                           f"patch Secret {namespace}/{name}")

    def delete_secret(self, namespace: str, name: str) -> bool:
        """Returns False when it did not exist."""
        try:
            self.request("DELETE", _core(namespace, "secrets", name),
                         what=f"delete Secret {namespace}/{name}")
            return True
        except KubeNotFound:
            return False

    def list_secrets(self, namespace: str | None, label_selector: str = "") -> list[Obj]:
        path = _core(namespace, "secrets") if namespace else "/api/v1/secrets"
        resp = self.request("GET", path, query={"labelSelector": label_selector},
                            what=f"list Secrets in {namespace or 'all namespaces'}")
        items: list[Obj] = resp.get("items") or []
        return items

    # --- ConfigMaps ----------------------------------------------------------------------

    def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none(_core(namespace, "configmaps", name),
                                 f"get ConfigMap {namespace}/{name}")

    def create_configmap(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        name = body.get("metadata", {}).get("name", "?")
        return self.request("POST", _core(namespace, "configmaps"), dict(body),
                            what=f"create ConfigMap {namespace}/{name}")

    def patch_configmap(
        self, namespace: str, name: str, patch: Mapping[str, Any] | list[Any]
    ) -> Obj:
        return self._patch(_core(namespace, "configmaps", name), patch,
                           f"patch ConfigMap {namespace}/{name}")

    # --- custom objects ------------------------------------------------------------------

    def get_custom(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> Obj | None:
        return self._get_or_none(_custom(group, version, plural, namespace, name),
                                 f"get {plural}.{group} {namespace or ''}/{name}")

    def list_custom(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[Obj]:
        resp = self.request("GET", _custom(group, version, plural, namespace),
                            query={"labelSelector": label_selector},
                            what=f"list {plural}.{group}")
        items: list[Obj] = resp.get("items") or []
        return items

    def create_custom(
        self, group: str, version: str, plural: str, namespace: str | None,
        body: Mapping[str, Any],
    ) -> Obj:
        name = body.get("metadata", {}).get("name", "?")
        return self.request("POST", _custom(group, version, plural, namespace), dict(body),
                            what=f"create {plural}.{group} {namespace or ''}/{name}")

    def patch_custom(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any] | list[Any],
    ) -> Obj:
        return self._patch(_custom(group, version, plural, namespace, name), patch,
                           f"patch {plural}.{group} {namespace or ''}/{name}")

    def patch_custom_status(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        status: Mapping[str, Any],
    ) -> Obj:
        """Merge-patch ``.status`` through the status subresource."""
        path = _custom(group, version, plural, namespace, name) + "/status"
        return self._patch(path, {"status": dict(status)},
                           f"patch status of {plural}.{group} {namespace or ''}/{name}")

    def delete_custom(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> bool:
        try:
            self.request("DELETE", _custom(group, version, plural, namespace, name),
                         what=f"delete {plural}.{group} {namespace or ''}/{name}")
            return True
        except KubeNotFound:
            return False

    def crd_established(self, name: str) -> bool:
        """True when the CustomResourceDefinition ``name`` exists and is Established."""
        crd = self._get_or_none(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", f"get CRD {name}"
        )
        if crd is None:
            return False
        for cond in (crd.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Established" and cond.get("status") == "True":
                return True
        return False

    # --- Events --------------------------------------------------------------------------

    def create_event(
        self,
        involved: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        type_: str = "Normal",
        component: str = "secretsync",
    ) -> Obj:
        """A core/v1 Event about ``involved`` (a full object dict). The caller guarantees the
        message holds no secret values."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": os.environ.get("HOSTNAME", component),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return self.request("POST", _core(namespace, "events"), body,
                            what=f"create Event for {namespace}/{meta.get('name')}")

    def list_events(self, namespace: str, field_selector: str = "") -> list[Obj]:
        resp = self.request("GET", _core(namespace, "events"),
                            query={"fieldSelector": field_selector},
                            what=f"list Events in {namespace}")
        items: list[Obj] = resp.get("items") or []
        return items

    # --- Namespaces and workloads (ExternalSecret conditions and rollout restarts) ---------

    def get_namespace(self, name: str) -> Obj | None:
        return self._get_or_none(f"/api/v1/namespaces/{name}", f"get Namespace {name}")

    def patch_workload(
        self, namespace: str, kind: str, name: str, patch: Mapping[str, Any]
    ) -> Obj:
        """Merge-patch a Deployment, StatefulSet or DaemonSet (apps/v1)."""
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets",
                  "DaemonSet": "daemonsets"}[kind]
        return self._patch(f"/apis/apps/v1/namespaces/{namespace}/{plural}/{name}", patch,
                           f"patch {kind} {namespace}/{name}")

    # --- ServiceAccount tokens -----------------------------------------------------------

    def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
    ) -> str:
        """A TokenRequest token for the ServiceAccount (the token is returned, never logged)."""
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_seconds},
        }
        if audiences:
            body["spec"]["audiences"] = audiences
        resp = self.request(
            "POST", _core(namespace, "serviceaccounts", service_account) + "/token", body,
            what=f"TokenRequest for ServiceAccount {namespace}/{service_account}",
        )
        token = (resp.get("status") or {}).get("token")
        if not token:
            raise KubeError(f"TokenRequest for {namespace}/{service_account} returned no token")
        return str(token)

    # --- Leases (leader election) --------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none(_lease(namespace, name), f"get Lease {namespace}/{name}")

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self.request("POST", _lease(namespace), dict(body),
                            what=f"create Lease in {namespace}")

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        """Optimistic-concurrency write: ``body`` carries the resourceVersion it was read at,
        so a concurrent writer gets ``KubeConflict``."""
        return self.request("PUT", _lease(namespace, name), dict(body),
                            what=f"replace Lease {namespace}/{name}")


    # --- server-side apply (install helpers, demo, tests) -----------------------------------

    def apply(
        self,
        doc: Mapping[str, Any],
        *,
        field_manager: str = "secretsync",
        dry_run: bool = False,
        plural: str | None = None,
    ) -> Obj:
        """Server-side apply of one manifest (creates or updates); ``dry_run`` is
        ``kubectl apply --dry-run=server``: admission and validation run, nothing is stored.
        ``plural`` is needed for kinds not in the built-in table."""
        path = object_path(doc, plural)
        query = {"fieldManager": field_manager, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        meta = doc.get("metadata") or {}
        return self.request(
            "PATCH", path, dict(doc), query=query, content_type=_APPLY,
            what=f"apply {doc.get('kind')} {meta.get('namespace') or ''}/{meta.get('name')}",
        )

    def delete_object(self, doc: Mapping[str, Any], *, plural: str | None = None) -> bool:
        try:
            self.request("DELETE", object_path(doc, plural))
            return True
        except KubeNotFound:
            return False


_APPLY = "application/apply-patch+yaml"

# kind -> (api prefix, plural, namespaced)
_KINDS: dict[str, tuple[str, str, bool]] = {
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
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
}


def object_path(doc: Mapping[str, Any], plural: str | None = None) -> str:
    """The REST path of a manifest's object (built-in kinds, or any kind given ``plural``)."""
    kind = str(doc.get("kind"))
    meta = doc.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if kind in _KINDS and plural is None:
        prefix, plural_, namespaced = _KINDS[kind]
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


def _core(namespace: str | None, plural: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{namespace}/{plural}" if namespace else f"/api/v1/{plural}"
    return f"{path}/{name}" if name else path


def _custom(
    group: str, version: str, plural: str, namespace: str | None, name: str | None = None
) -> str:
    base = f"/apis/{group}/{version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def _lease(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{path}/{name}" if name else path


_MERGE = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


def _patch_body(patch: Mapping[str, Any] | list[Any]) -> Any:
    return patch if isinstance(patch, list) else dict(patch)


def _patch_type(patch: Mapping[str, Any] | list[Any]) -> str:
    # A list is a JSON patch (RFC 6902, e.g. with a resourceVersion "test"), a dict an RFC 7386
    # merge patch (``None`` deletes a key) -- explicit, so behaviour never depends on the kind.
    return _JSON_PATCH if isinstance(patch, list) else _MERGE


def _kubeconfig_namespace(path: str, context: str | None) -> str | None:
    try:
        import yaml

        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        ctx_name = context or doc.get("current-context")
        for ctx in doc.get("contexts") or []:
            if ctx.get("name") == ctx_name:
                ns = (ctx.get("context") or {}).get("namespace")
                return str(ns) if ns else None
    except (OSError, ValueError, AttributeError):
        return None
    except Exception:  # a yaml.YAMLError: the client already parsed it, so be lenient
        return None
    return None


def _incluster_namespace() -> str | None:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None
