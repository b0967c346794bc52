"""The only module that talks to the Kubernetes API.

Thin, typed, synchronous calls over our own keep-alive ``http.client`` connections -- half
the CPU of the ``kubernetes`` client's urllib3 path per request, which is most of a
controller's own work. On the common set-ups (see ``secretsync.kubeconfig``: certificates,
bearer tokens, in-cluster) we read the configuration ourselves and never import the client
(~180 ms and ~30 MiB saved at start-up); other set-ups (exec plugins, auth-provider, proxies,
TLS server-name overrides) load it through ``kubernetes.config``, and requests then take its
auth headers, or its own path where our connections cannot reproduce the set-up. The client
is still built, lazily, for callers of ``Kube.api_client``. Objects go in and
come out as plain JSON dicts (camelCase, exactly what the API server sends), so the pure
``reconcile`` layer never sees client model classes. ``ApiException`` is translated here into
the ``KubeError`` family (404 -> ``None`` for reads, ``KubeNotFound`` for writes); error texts
carry the API server's status message, never request bodies (which may hold secret data).

The controller calls these from ``asyncio.to_thread``; the CLI calls them directly.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from secretsync import __version__, clock, kubeconfig
from secretsync.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
)

Obj = dict[str, Any]

# Controllers call the API from many threads at once (asyncio.to_thread); a pool smaller than
# that discards connections and pays a TLS handshake per request.
_POOL = 64
_USER_AGENT = f"secretsync/{__version__}"

_log = logging.getLogger("secretsync.kube")


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
    return _http_error(int(exc.status or 0), exc.reason or "", exc.body, what)


def _http_error(status: int, reason: str, body: Any, what: str) -> KubeError:
    """The ``KubeError`` for an error response; its text is the API server's message."""
    message = reason
    try:
        doc = json.loads(body or b"{}")
        message = str(doc.get("message") or message)
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


def _service_answer(status: int, reason: str, data: bytes, what: str) -> tuple[int, Obj]:
    """Pure: the answer of a Service reached through the API server proxy. An error the API
    server made itself is a ``v1 Status`` object (the proxied service's own errors are passed
    through unchanged), so that becomes the ``KubeError`` it stands for; anything else is the
    service's answer. A body that is not a JSON object is never quoted (it could be anything)."""
    try:
        doc = json.loads(data) if data else {}
    except (ValueError, UnicodeDecodeError):
        doc = None
    ok = 200 <= status < 300
    if (not ok and isinstance(doc, dict) and doc.get("kind") == "Status"
            and doc.get("apiVersion") == "v1"):
        raise _http_error(status, reason, data, what)
    if isinstance(doc, dict):
        return status, doc
    if ok:
        raise KubeError(f"{what}: the answer is not a JSON object (HTTP {status})", status=status)
    return status, {"reason": f"HTTP{status}", "message": reason or f"HTTP {status}"}


class _Transport:
    """Keep-alive HTTP/1.1 connections to one API server, shared by threads (each request
    takes an idle connection or opens one). A kept-alive connection the server has closed
    meanwhile fails on first use; the request is then sent once more on a new connection, and
    the other idle ones are dropped too: a server that closed one has usually closed them all
    (a restarted API server -- over TLS, an abrupt close shows as an unexpected EOF)."""

    _STALE = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError,
              BrokenPipeError, ConnectionAbortedError, ssl.SSLEOFError, ssl.SSLZeroReturnError)

    def __init__(self, server: str, context: ssl.SSLContext | None, max_idle: int) -> None:
        url = urlsplit(server)
        self.base = url.path.rstrip("/")
        self.host = url.hostname or "localhost"
        self.https = url.scheme == "https"
        self.port = url.port or (443 if self.https else 80)
        self.context = (context or ssl.create_default_context()) if self.https else None
        self.max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @classmethod
    def for_client(cls, cfg: Any) -> _Transport:
        """Connections for a ``kubernetes.client.Configuration`` that is :meth:`usable`."""
        context = None
        if str(cfg.host).startswith("https://"):
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
            if cfg.ca_cert_data:
                context.load_verify_locations(cadata=cfg.ca_cert_data)
            if cfg.cert_file:
                context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
            if not cfg.verify_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return cls(cfg.host, context, int(cfg.connection_pool_maxsize or 4))

    @staticmethod
    def usable(cfg: Any) -> bool:
        """Set-ups we reproduce exactly; anything else keeps the client's own path."""
        return (str(cfg.host).startswith(("https://", "http://")) and not cfg.proxy
                and not cfg.tls_server_name and cfg.assert_hostname in (None, True)
                and cfg.socket_options is None)

    def _connection(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle and not fresh:
                return self._idle.pop(), True
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, context=self.context), False
        return http.client.HTTPConnection(self.host, self.port), False

    def send(self, method: str, path: str, body: bytes | None,
             headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        for attempt in (0, 1):
            conn, reused = self._connection(fresh=attempt > 0)
            try:
                conn.request(method, self.base + path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read()
            except self._STALE:
                conn.close()
                if reused and attempt == 0:
                    self.close()
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                with self._lock:
                    if len(self._idle) < self.max_idle:
                        self._idle.append(conn)
                        conn = None  # type: ignore[assignment]
                if conn is not None:
                    conn.close()
            return resp.status, resp.reason, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _load(resp: Any) -> Obj:
    data = resp.data
    if not data:
        return {}
    result: Obj = json.loads(data)
    return result


class Kube:
    """A connected client. Build with :meth:`from_config`; cheap to share between threads."""

    def __init__(self, api_client: Any = None, *, namespace: str | None = None,
                 settings: kubeconfig.Settings | None = None) -> None:
        """From a ``kubernetes.client.ApiClient``, or from ``settings`` we read ourselves
        (then the client is only built if someone asks for :attr:`api_client`)."""
        self._api_client = api_client
        self._settings = settings
        self._client_lock = threading.Lock()
        self._transport: _Transport | None
        if settings is not None:
            self.default_namespace = namespace or settings.namespace or "default"
            self._transport = _Transport(settings.server, settings.ssl_context, _POOL)
            return
        if api_client is None:
            raise TypeError("Kube needs an api_client or settings")
        self.default_namespace = namespace or "default"
        cfg = api_client.configuration
        self._transport = _Transport.for_client(cfg) if _Transport.usable(cfg) else None

    @property
    def api_client(self) -> Any:
        """The ``kubernetes.client.ApiClient`` for the same server and credentials (built on
        first use when we read the configuration ourselves)."""
        if self._api_client is None:
            with self._client_lock:
                if self._api_client is None:
                    assert self._settings is not None
                    self._api_client = _client_for(self._settings)
        return self._api_client

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """Connect like kubectl: an explicit kubeconfig, else ``$KUBECONFIG``, else
        ``~/.kube/config``, else the in-cluster ServiceAccount."""
        from secretsync import kubeconfig as kc

        path = kc.config_path(kubeconfig)
        if path is None and not kc.in_cluster():
            raise KubeError(
                "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, "
                "or create ~/.kube/config"
            )
        found = kc.load(path, context)
        if isinstance(found, kc.Settings):
            return cls(settings=found)
        return cls._from_client_config(found, context)

    @classmethod
    def _from_client_config(cls, fallback: kubeconfig.Fallback, context: str | None) -> Kube:
        """A kubeconfig set-up we do not reproduce, loaded by ``kubernetes.config``."""
        path = fallback.path
        try:
            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException
        except ImportError:
            raise KubeError(
                f"kubeconfig {path} {fallback.why}, which needs the kubernetes package: "
                "pip install 'secretsync[controller]'"
            ) from None
        try:
            cfg = client.Configuration()
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=cfg
            )
        except (ConfigException, OSError, ValueError) as exc:
            raise KubeError(f"cannot load kubeconfig {path}: {exc}") from exc
        cfg.connection_pool_maxsize = max(int(cfg.connection_pool_maxsize or 0), _POOL)
        try:
            return cls(client.ApiClient(cfg), namespace=_kubeconfig_namespace(path, context))
        except (OSError, ssl.SSLError) as exc:
            raise KubeError(f"cannot load kubeconfig {path}: TLS files: {exc}") from exc

    def connection(self) -> Connection:
        if self._settings is not None:
            s = self._settings
            return Connection(
                server=s.server,
                ca_path=s.ca_file,
                insecure=s.insecure,
                token=s.token.get() if s.token is not None else None,
                cert_path=s.cert_file,
                key_path=s.key_file,
                namespace=self.default_namespace,
            )
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
        if self._transport is not None:
            self._transport.close()
        if self._api_client is not None:
            self._api_client.close()

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
        if self._transport is not None:
            return self._send(method, path, body, query, content_type, what)
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
            raise _translate(exc, what) from exc

    def _send(self, method: str, path: str, body: Any, query: Mapping[str, str] | None,
              content_type: str, what: str) -> Obj:
        """``request`` over our own connections; the auth headers are ours, or the client's
        when it loaded the configuration (so its token refresh and exec plugins work)."""
        status, reason, data = self._exchange(method, path, body, query, content_type, what)
        if not 200 <= status < 300:
            raise _http_error(status, reason, data, what)
        if not data:
            return {}
        result: Obj = json.loads(data)
        return result

    def _exchange(self, method: str, path: str, body: Any, query: Mapping[str, str] | None,
                  content_type: str, what: str) -> tuple[int, str, bytes]:
        """(status, reason phrase, body) of one request over our own connections, whatever
        the status; only transport failures raise."""
        assert self._transport is not None
        if self._settings is not None:
            headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
        else:
            headers = {**self.api_client.default_headers, "Accept": "application/json"}
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body, separators=(",", ":")).encode()
        url = quote(path, safe="/:@!$&'()*+,;=-._~")
        params = [(k, v) for k, v in (query or {}).items() if v]
        if params:
            url += "?" + urlencode(params, quote_via=quote)
        try:
            if self._settings is None:
                self.api_client.update_params_for_auth(headers, [], ["BearerToken"], path,
                                                       method, body)
            elif self._settings.token is not None:
                headers["Authorization"] = f"Bearer {self._settings.token.get()}"
            status, reason, data = self._transport.send(method, url, payload, headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise KubeError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}") from exc
        return status, reason, data

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
        if self._transport is not None:
            status, reason, data = self._exchange(method, api_path, body, None,
                                                  "application/json", what)
            return _service_answer(status, reason, data, what)
        from kubernetes.client.exceptions import ApiException

        try:
            param = self.api_client.param_serialize(
                method=method, resource_path=api_path, body=body,
                header_params={"Content-Type": "application/json", "Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            resp = self.api_client._call_with_legacy_options(param, {}, None, False, None, True)
        except ApiException as exc:
            raw = exc.body.encode() if isinstance(exc.body, str) else (exc.body or b"")
            return _service_answer(int(exc.status or 0), exc.reason or "", raw, what)
        except Exception as exc:
            raise _translate(exc, what) from exc
        return _service_answer(int(resp.status), str(resp.reason or ""), resp.data or b"", what)

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

    def list_secrets(self, namespace: str | None, label_selector: str = "", *,
                     page_size: int = 0) -> list[Obj]:
        """The Secrets matching ``label_selector``; ``page_size``: in pages of that many
        (``limit``/``continue``), so that no single answer holds them all."""
        path = _core(namespace, "secrets") if namespace else "/api/v1/secrets"
        return self._list_items(path, {"labelSelector": label_selector},
                                f"list Secrets in {namespace or 'all namespaces'}", page_size)

    def _list_items(self, path: str, query: Mapping[str, str], what: str,
                    page_size: int = 0) -> list[Obj]:
        """The items of a LIST, page after page when ``page_size`` is set. A continue token
        that expired meanwhile (410: the store was compacted) starts the listing over, once:
        pages of two different versions must not be mixed."""
        for attempt in (0, 1):
            items: list[Obj] = []
            token = ""
            while True:
                paging = {"limit": str(page_size), "continue": token} if page_size else {}
                try:
                    resp = self.request("GET", path, query={**query, **paging}, what=what)
                except KubeError as exc:
                    if exc.status == 410 and token and attempt == 0:
                        break
                    raise
                items.extend(resp.get("items") or [])
                token = str((resp.get("metadata") or {}).get("continue") or "")
                if not token:
                    return items
        raise AssertionError("unreachable")  # the second attempt returns or raises

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
        return self._list_items(_custom(group, version, plural, namespace),
                                {"labelSelector": label_selector}, f"list {plural}.{group}")

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
        now = clock.rfc3339()
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
        return self._list_items(_core(namespace, "events"), {"fieldSelector": field_selector},
                                f"list Events in {namespace}")

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


def _client_for(settings: kubeconfig.Settings) -> Any:
    """A ``kubernetes.client.ApiClient`` with the same server and credentials as ours."""
    from kubernetes import client

    cfg: Any = client.Configuration()
    cfg.host = settings.server
    cfg.ssl_ca_cert = settings.ca_file
    cfg.verify_ssl = not settings.insecure
    cfg.cert_file = settings.cert_file
    cfg.key_file = settings.key_file
    cfg.connection_pool_maxsize = _POOL
    token = settings.token
    if token is not None:
        def refresh(conf: Any) -> None:
            conf.api_key["BearerToken"] = f"Bearer {token.get()}"

        refresh(cfg)
        cfg.refresh_api_key_hook = refresh
    return client.ApiClient(cfg)
