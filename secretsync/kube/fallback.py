"""The set-ups our own connections do not reproduce, through the ``kubernetes`` package.

Why this exists: importing ``kubernetes`` costs ~180 ms and ~30 MiB at start-up, so the
common set-ups never do (``config`` reads them, ``transport`` sends their requests). Exec
credential plugins, auth-provider, proxies and TLS server-name overrides are loaded by
``kubernetes.config`` instead; requests then take the client's auth headers, or its own HTTP
path where our connections cannot reproduce the set-up. Every use of the package is here,
imported lazily: loading such a kubeconfig, building an ``ApiClient`` for callers that ask for
one, sending one request through it, and translating its ``ApiException`` into the
``KubeError`` family (the texts ``errors`` gives our own connections' answers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from secretsync.errors import KubeError
from secretsync.kube.config import Fallback, Settings
from secretsync.kube.errors import http_error, service_answer


def translate(exc: Exception, what: str) -> KubeError:
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        return KubeError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
    return http_error(int(exc.status or 0), exc.reason or "", exc.body, what)


# --- loading -------------------------------------------------------------------------------


def load_config(fallback: Fallback, context: str | None, pool_size: int) -> Any:
    """The ``kubernetes.client.Configuration`` of a kubeconfig we do not reproduce, with a
    connection pool of at least ``pool_size``."""
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
    cfg.connection_pool_maxsize = max(int(cfg.connection_pool_maxsize or 0), pool_size)
    return cfg


def new_client(cfg: Any) -> Any:
    """A ``kubernetes.client.ApiClient`` for a configuration from :func:`load_config`."""
    from kubernetes import client

    return client.ApiClient(cfg)


def kubeconfig_namespace(path: str, context: str | None) -> str | None:
    """The namespace of the kubeconfig's context (the client does not keep it)."""
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


def client_for(settings: Settings, pool_size: int) -> Any:
    """A ``kubernetes.client.ApiClient`` with the same server and credentials as ours."""
    from kubernetes import client

    cfg: Any = client.Configuration()
    cfg.host = settings.server
    cfg.ssl_ca_cert = settings.ca_file
    cfg.verify_ssl = not settings.insecure
    cfg.cert_file = settings.cert_file
    cfg.key_file = settings.key_file
    cfg.connection_pool_maxsize = pool_size
    token = settings.token
    if token is not None:
        def refresh(conf: Any) -> None:
            conf.api_key["BearerToken"] = f"Bearer {token.get()}"

        refresh(cfg)
        cfg.refresh_api_key_hook = refresh
    return client.ApiClient(cfg)


# --- requests over the client's own HTTP path ----------------------------------------------


def request(api_client: Any, method: str, path: str, body: Any,
            query: Mapping[str, str] | None, content_type: str, what: str) -> dict[str, Any]:
    """One JSON request through the client; failures are ``KubeError``s."""
    try:
        param = api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=[(k, v) for k, v in (query or {}).items() if v],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = api_client._call_with_legacy_options(param, {}, None, False, None, True)
        return _load(resp)
    except Exception as exc:
        raise translate(exc, what) from exc


def proxy(api_client: Any, method: str, api_path: str, body: Any,
          what: str) -> tuple[int, dict[str, Any]]:
    """One request to a Service through the API server proxy, via the client: as
    ``errors.service_answer``."""
    from kubernetes.client.exceptions import ApiException

    try:
        param = api_client.param_serialize(
            method=method, resource_path=api_path, body=body,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = api_client._call_with_legacy_options(param, {}, None, False, None, True)
    except ApiException as exc:
        raw = exc.body.encode() if isinstance(exc.body, str) else (exc.body or b"")
        return service_answer(int(exc.status or 0), exc.reason or "", raw, what)
    except Exception as exc:
        raise translate(exc, what) from exc
    return service_answer(int(resp.status), str(resp.reason or ""), resp.data or b"", what)


def _load(resp: Any) -> dict[str, Any]:
    data = resp.data
    if not data:
        return {}
    result: dict[str, Any] = json.loads(data)
    return result
