"""``Kube``: typed calls for the objects secretsync reads and writes.

Why this exists: callers want "get this Secret", "merge-patch that status", "post an Event",
not HTTP. Each method builds one request -- its REST path (``paths``), body and a ``what``
naming the object for error texts -- and hands it to :meth:`Kube.request`, the one funnel
every call goes through (tests count or fake requests there); ``transport`` sends it. The
caller-facing conventions live here: a 404 is ``None`` on a read and ``False`` on a delete,
LISTs may be paged (``listing``), and ``post_event`` never fails its caller. Building a client
(:meth:`Kube.from_config`) picks our own reading of the configuration (``config``) or the
``kubernetes`` package's (``fallback``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any

from secretsync.errors import KubeError, KubeNotFound
from secretsync.kube import config, events, fallback, listing, paths
from secretsync.kube.transport import POOL, Connection, Obj, Transport

_log = logging.getLogger("secretsync.kube")


class Kube:
    """A connected client. Build with :meth:`from_config`; cheap to share between threads."""

    def __init__(self, api_client: Any = None, *, namespace: str | None = None,
                 settings: config.Settings | None = None) -> None:
        """From a ``kubernetes.client.ApiClient``, or from ``settings`` we read ourselves
        (then the client is only built if someone asks for :attr:`api_client`)."""
        if settings is not None:
            self.default_namespace = namespace or settings.namespace or "default"
        elif api_client is None:
            raise TypeError("Kube needs an api_client or settings")
        else:
            self.default_namespace = namespace or "default"
        self._transport = Transport(settings=settings, api_client=api_client)

    @property
    def api_client(self) -> Any:
        """The ``kubernetes.client.ApiClient`` for the same server and credentials (built on
        first use when we read the configuration ourselves)."""
        return self._transport.api_client

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """Connect like kubectl: an explicit kubeconfig, else ``$KUBECONFIG``, else
        ``~/.kube/config``, else the in-cluster ServiceAccount."""
        path = config.config_path(kubeconfig)
        if path is None and not config.in_cluster():
            raise KubeError(
                "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, "
                "or create ~/.kube/config"
            )
        found = config.load(path, context)
        if isinstance(found, config.Settings):
            return cls(settings=found)
        return cls._from_client_config(found, context)

    @classmethod
    def _from_client_config(cls, found: config.Fallback, context: str | None) -> Kube:
        """A kubeconfig set-up we do not reproduce, loaded by ``kubernetes.config``."""
        cfg = fallback.load_config(found, context, POOL)
        try:
            return cls(fallback.new_client(cfg),
                       namespace=fallback.kubeconfig_namespace(found.path, context))
        except (OSError, ssl.SSLError) as exc:
            raise KubeError(f"cannot load kubeconfig {found.path}: TLS files: {exc}") from exc

    def connection(self) -> Connection:
        return self._transport.connection(self.default_namespace)

    def close(self) -> None:
        self._transport.close()

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
        what = what or f"{method} {path}"
        return self._transport.request(method, path, body, query, content_type, what)

    def proxy_service(self, method: str, namespace: str, service: str, path: str,
                      body: Any = None, *, port: str = "http",
                      scheme: str = "http") -> tuple[int, Obj]:
        """One JSON request to a Service through the API server's service proxy
        (``/api/v1/namespaces/<ns>/services/<scheme>:<service>:<port>/proxy<path>``) with our
        credentials: (HTTP status, JSON object) of the *service's* answer, whatever its status.
        The API server's own refusals (no ``services/proxy`` permission, no such Service, no
        endpoint, cannot connect) raise ``KubeError``."""
        api_path = (f"/api/v1/namespaces/{namespace}/services/{scheme}:{service}:{port}"
                    f"/proxy{path}")
        what = f"{method} {path} on Service {namespace}/{service} via the API server proxy"
        return self._transport.proxy(method, api_path, body, what)

    def _get_or_none(self, path: str, what: str) -> Obj | None:
        try:
            return self.request("GET", path, what=what)
        except KubeNotFound:
            return None

    def _patch(self, path: str, patch: Mapping[str, Any] | list[Any], what: str) -> Obj:
        return self.request(
            "PATCH", path, paths.patch_body(patch), content_type=paths.patch_type(patch), what=what
        )

    # --- Secrets -------------------------------------------------------------------------

    def get_secret(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none(paths.core(namespace, "secrets", name),
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
        return self.request("POST", paths.core(namespace, "secrets"), dict(body),
                            what=f"create Secret {namespace}/{name}")

    def replace_secret(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        return self.request("PUT", paths.core(namespace, "secrets", name), dict(body),
                            what=f"replace Secret {namespace}/{name}")

    def patch_secret(
        self, namespace: str, name: str, patch: Mapping[str, Any] | list[Any]
    ) -> Obj:
        """Merge patch (a dict) or JSON patch (a list)."""
        return self._patch(paths.core(namespace, "secrets", name), patch,
                           f"patch Secret {namespace}/{name}")

    def delete_secret(self, namespace: str, name: str) -> bool:
        """Returns False when it did not exist."""
        try:
            self.request("DELETE", paths.core(namespace, "secrets", name),
                         what=f"delete Secret {namespace}/{name}")
            return True
        except KubeNotFound:
            return False

    def list_secrets(self, namespace: str | None, label_selector: str = "", *,
                     page_size: int = 0) -> list[Obj]:
        """The Secrets matching ``label_selector``; ``page_size``: in pages of that many
        (``limit``/``continue``), so that no single answer holds them all."""
        path = paths.core(namespace, "secrets") if namespace else "/api/v1/secrets"
        return self._list_items(path, {"labelSelector": label_selector},
                                f"list Secrets in {namespace or 'all namespaces'}", page_size)

    def _list_items(self, path: str, query: Mapping[str, str], what: str,
                    page_size: int = 0) -> list[Obj]:
        """The items of a LIST, page after page when ``page_size`` is set. A continue token
        that expired meanwhile (410: the store was compacted) starts the listing over, once:
        pages of two different versions must not be mixed."""
        return listing.list_items(self.request, path, query, what, page_size)

    # --- ConfigMaps ----------------------------------------------------------------------

    def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none(paths.core(namespace, "configmaps", name),
                                 f"get ConfigMap {namespace}/{name}")

    def create_configmap(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        name = body.get("metadata", {}).get("name", "?")
        return self.request("POST", paths.core(namespace, "configmaps"), dict(body),
                            what=f"create ConfigMap {namespace}/{name}")

    def patch_configmap(
        self, namespace: str, name: str, patch: Mapping[str, Any] | list[Any]
    ) -> Obj:
        return self._patch(paths.core(namespace, "configmaps", name), patch,
                           f"patch ConfigMap {namespace}/{name}")

    # --- custom objects ------------------------------------------------------------------

    def get_custom(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> Obj | None:
        return self._get_or_none(paths.custom(group, version, plural, namespace, name),
                                 f"get {plural}.{group} {namespace or ''}/{name}")

    def list_custom(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[Obj]:
        return self._list_items(paths.custom(group, version, plural, namespace),
                                {"labelSelector": label_selector}, f"list {plural}.{group}")

    def create_custom(
        self, group: str, version: str, plural: str, namespace: str | None,
        body: Mapping[str, Any],
    ) -> Obj:
        name = body.get("metadata", {}).get("name", "?")
        return self.request("POST", paths.custom(group, version, plural, namespace), dict(body),
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
        return self._patch(paths.custom(group, version, plural, namespace, name), patch,
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
        path = paths.custom(group, version, plural, namespace, name) + "/status"
        return self._patch(path, {"status": dict(status)},
                           f"patch status of {plural}.{group} {namespace or ''}/{name}")

    def delete_custom(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> bool:
        try:
            self.request("DELETE", paths.custom(group, version, plural, namespace, name),
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
        body = events.event_body(involved, reason=reason, message=message, type_=type_,
                                 component=component)
        namespace = body["metadata"]["namespace"]
        name = body["involvedObject"]["name"]
        return self.request("POST", paths.core(namespace, "events"), body,
                            what=f"create Event for {namespace}/{name}")

    def post_event(self, involved: Mapping[str, Any], *, reason: str, message: str,
                   warning: bool = False) -> bool:
        """``create_event`` that never fails its caller (an Event is a notice; losing one must
        not fail a reconcile, as in kopf's own events module): False, and one log line, when
        the API server refused it."""
        try:
            self.create_event(involved, reason=reason, message=message,
                              type_="Warning" if warning else "Normal")
            return True
        except KubeError as exc:
            meta = involved.get("metadata") or {}
            _log.warning("Event %s for %s/%s not posted: %s", reason, meta.get("namespace"),
                         meta.get("name"), exc.message)
            return False

    def list_events(self, namespace: str, field_selector: str = "") -> list[Obj]:
        return self._list_items(paths.core(namespace, "events"), {"fieldSelector": field_selector},
                                f"list Events in {namespace}")

    # --- Namespaces and workloads (ExternalSecret conditions and rollout restarts) ---------

    def get_namespace(self, name: str) -> Obj | None:
        return self._get_or_none(f"/api/v1/namespaces/{name}", f"get Namespace {name}")

    def patch_workload(
        self, namespace: str, kind: str, name: str, patch: Mapping[str, Any]
    ) -> Obj:
        """Merge-patch a Deployment, StatefulSet or DaemonSet (apps/v1)."""
        return self._patch(paths.workload(namespace, kind, name), patch,
                           f"patch {kind} {namespace}/{name}")

    # --- ServiceAccount tokens -----------------------------------------------------------

    def get_service_account(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none(paths.core(namespace, "serviceaccounts", name),
                                 f"get ServiceAccount {namespace}/{name}")

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
            "POST", paths.core(namespace, "serviceaccounts", service_account) + "/token", body,
            what=f"TokenRequest for ServiceAccount {namespace}/{service_account}",
        )
        token = (resp.get("status") or {}).get("token")
        if not token:
            raise KubeError(f"TokenRequest for {namespace}/{service_account} returned no token")
        return str(token)

    # --- Leases (leader election) --------------------------------------------------------

    def get_lease(self, namespace: str, name: str) -> Obj | None:
        return self._get_or_none(paths.lease(namespace, name), f"get Lease {namespace}/{name}")

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self.request("POST", paths.lease(namespace), dict(body),
                            what=f"create Lease in {namespace}")

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Obj:
        """Optimistic-concurrency write: ``body`` carries the resourceVersion it was read at,
        so a concurrent writer gets ``KubeConflict``."""
        return self.request("PUT", paths.lease(namespace, name), dict(body),
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
        path = paths.object_path(doc, plural)
        query = {"fieldManager": field_manager, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        meta = doc.get("metadata") or {}
        return self.request(
            "PATCH", path, dict(doc), query=query, content_type=paths.APPLY,
            what=f"apply {doc.get('kind')} {meta.get('namespace') or ''}/{meta.get('name')}",
        )

    def delete_object(self, doc: Mapping[str, Any], *, plural: str | None = None) -> bool:
        try:
            self.request("DELETE", paths.object_path(doc, plural))
            return True
        except KubeNotFound:
            return False
