"""Fetch the controller's certificate from its ConfigMap -- the one CLI path that needs
``kubernetes`` (imported here, lazily, so ``seal --cert`` never pays for it).

The controller publishes its newest certificate in ConfigMap ``<controller-name>-cert``
(key ``cert.pem``), readable by every authenticated user: no proxy to the controller's pod is
needed, so this works where the API server cannot reach pods (private GKE/EKS).
The kubeconfig is resolved as kubectl does: ``--kubeconfig``, else ``$KUBECONFIG`` (a
path list, merged), else ``~/.kube/config``; ``--context`` else the current context; in a pod
without a kubeconfig, the in-cluster service account.
"""

from __future__ import annotations

import os
from typing import Any

from secretsync import api
from secretsync.errors import SecretSyncError


class CertFetchError(SecretSyncError):
    reason = "CertFetchFailed"


def _api_client(kubeconfig: str | None, context: str | None) -> Any:
    try:
        from kubernetes import client, config
    except ImportError:
        raise CertFetchError(
            "fetching the certificate from the cluster needs the kubernetes package "
            "(pip install 'secretsync[controller]'), or pass --cert FILE|URL"
        ) from None
    paths = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    have_file = any(os.path.exists(p) for p in paths.split(os.pathsep) if p)
    if not have_file and not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    if not have_file:
        raise CertFetchError(f"no kubeconfig found at {paths} (use --kubeconfig or --cert)")
    try:
        return config.new_client_from_config(config_file=paths, context=context)  # type: ignore[no-untyped-call]
    except config.ConfigException as exc:
        raise CertFetchError(f"kubeconfig {paths}: {exc}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise CertFetchError(f"kubeconfig {paths}: unusable ({type(exc).__name__})") from None


def fetch_cert_pem(
    *, kubeconfig: str | None, context: str | None, namespace: str, name: str
) -> bytes:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api_client = _api_client(kubeconfig, context)
    cm_name = f"{name}{api.CERT_CONFIGMAP_SUFFIX}"
    where = f"ConfigMap {namespace}/{cm_name}"
    try:
        cm = client.CoreV1Api(api_client).read_namespaced_config_map(
            cm_name, namespace, _request_timeout=30
        )
    except ApiException as exc:
        if exc.status == 404:
            raise CertFetchError(
                f"{where} not found: is the controller installed? "
                "(--controller-namespace/--controller-name, or pass --cert)"
            ) from None
        if exc.status in (401, 403):
            raise CertFetchError(f"{where}: access denied ({exc.status} {exc.reason})") from None
        raise CertFetchError(f"{where}: API error {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors, timeouts, TLS problems
        raise CertFetchError(
            f"cannot reach the Kubernetes API for {where}: {type(exc).__name__}"
        ) from None
    finally:
        api_client.close()
    pem = (cm.data or {}).get(api.CERT_CONFIGMAP_KEY)
    if not pem:
        raise CertFetchError(f"{where} has no {api.CERT_CONFIGMAP_KEY}")
    return str(pem).encode("utf-8")
