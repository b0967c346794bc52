"""How one request reaches the API server and its answer comes back.

Why this exists: a request over the ``kubernetes`` client's urllib3 path costs twice the CPU
of one over a plain keep-alive ``http.client`` connection, and requests are most of a
controller's own work. So :class:`Pool` keeps our own connections to one API server, shared
by threads, and resends a request once when the server had closed a kept-alive connection
(a restarted API server); :class:`Transport` sends one JSON request: URL, headers and auth
(ours from ``config.Settings``, or the client's when ``fallback`` loaded the kubeconfig, so its
token refresh and exec plugins work), and a failure answer becomes its ``KubeError``
(``errors``); a connection failure is a ``KubeError`` too. Set-ups our connections cannot
reproduce take the client's own path (``fallback``). Requests set no timeout of their own.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from secretsync import __version__
from secretsync.errors import KubeError
from secretsync.kube import fallback
from secretsync.kube.config import Settings
from secretsync.kube.errors import http_error, service_answer

Obj = dict[str, Any]

# Controllers call the API from many threads at once (asyncio.to_thread); a pool smaller than
# that discards connections and pays a TLS handshake per request.
POOL = 64
USER_AGENT = f"secretsync/{__version__}"


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


class Pool:
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
    def for_client(cls, cfg: Any) -> Pool:
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


class Transport:
    """Requests to one API server: over our :class:`Pool` when we read the configuration
    ourselves (``settings``) or the client's configuration is :meth:`Pool.usable`, else
    through the given ``kubernetes.client.ApiClient``. Thread-safe."""

    def __init__(self, *, settings: Settings | None = None, api_client: Any = None) -> None:
        self.settings = settings
        self._api_client = api_client
        self._client_lock = threading.Lock()
        self.pool: Pool | None
        if settings is not None:
            self.pool = Pool(settings.server, settings.ssl_context, POOL)
        else:
            cfg = api_client.configuration
            self.pool = Pool.for_client(cfg) if Pool.usable(cfg) else None

    @property
    def api_client(self) -> Any:
        """The ``kubernetes.client.ApiClient`` for the same server and credentials (built on
        first use when we read the configuration ourselves)."""
        if self._api_client is None:
            with self._client_lock:
                if self._api_client is None:
                    assert self.settings is not None
                    self._api_client = fallback.client_for(self.settings, POOL)
        return self._api_client

    def request(self, method: str, path: str, body: Any, query: Mapping[str, str] | None,
                content_type: str, what: str) -> Obj:
        """One JSON request; the answer's JSON object, or its ``KubeError``."""
        if self.pool is None:
            return fallback.request(self.api_client, method, path, body, query, content_type,
                                    what)
        status, reason, data = self.exchange(method, path, body, query, content_type, what)
        if not 200 <= status < 300:
            raise http_error(status, reason, data, what)
        if not data:
            return {}
        result: Obj = json.loads(data)
        return result

    def exchange(self, method: str, path: str, body: Any, query: Mapping[str, str] | None,
                 content_type: str, what: str) -> tuple[int, str, bytes]:
        """(status, reason phrase, body) of one request over our own connections, whatever
        the status; only transport failures raise. The auth headers are ours, or the
        client's when it loaded the configuration."""
        assert self.pool is not None
        if self.settings is not None:
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
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
            if self.settings is None:
                self.api_client.update_params_for_auth(headers, [], ["BearerToken"], path,
                                                       method, body)
            elif self.settings.token is not None:
                headers["Authorization"] = f"Bearer {self.settings.token.get()}"
            status, reason, data = self.pool.send(method, url, payload, headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise KubeError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}") from exc
        return status, reason, data

    def proxy(self, method: str, api_path: str, body: Any, what: str) -> tuple[int, Obj]:
        """(status, JSON object) of a Service's answer through the API server proxy, as
        ``errors.service_answer``."""
        if self.pool is None:
            return fallback.proxy(self.api_client, method, api_path, body, what)
        status, reason, data = self.exchange(method, api_path, body, None, "application/json",
                                             what)
        return service_answer(status, reason, data, what)

    def connection(self, namespace: str) -> Connection:
        if self.settings is not None:
            s = self.settings
            return Connection(
                server=s.server,
                ca_path=s.ca_file,
                insecure=s.insecure,
                token=s.token.get() if s.token is not None else None,
                cert_path=s.cert_file,
                key_path=s.key_file,
                namespace=namespace,
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
            namespace=namespace,
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self._api_client is not None:
            self._api_client.close()
