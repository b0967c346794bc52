"""Fetch the controller's certificate from its ConfigMap (``secretsync.kube`` is imported
here, lazily, so ``seal --cert`` never pays for it; it needs the ``kubernetes`` package only
for kubeconfigs it does not read itself, e.g. exec credential plugins).

The controller publishes its newest certificate in ConfigMap ``<controller-name>-cert``
(key ``cert.pem``), readable by every authenticated user: no proxy to the controller's pod is
needed, so this works where the API server cannot reach pods (private GKE/EKS).
The kubeconfig is resolved as kubectl does (``secretsync.kube.Kube.from_config``):
``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``; ``--context`` else the current
context; in a pod without a kubeconfig, the in-cluster service account.
"""

from __future__ import annotations

from secretsync import api
from secretsync.errors import SecretSyncError


class CertFetchError(SecretSyncError):
    reason = "CertFetchFailed"


def fetch_cert_pem(
    *, kubeconfig: str | None, context: str | None, namespace: str, name: str
) -> bytes:
    from secretsync.kube import Kube

    kube = Kube.from_config(kubeconfig, context)
    cm_name = f"{name}{api.CERT_CONFIGMAP_SUFFIX}"
    where = f"ConfigMap {namespace}/{cm_name}"
    try:
        cm = kube.get_configmap(namespace, cm_name)
    finally:
        kube.close()
    if cm is None:
        raise CertFetchError(
            f"{where} not found: is the controller installed? "
            "(--controller-namespace/--controller-name, or pass --cert)"
        )
    pem = (cm.get("data") or {}).get(api.CERT_CONFIGMAP_KEY)
    if not isinstance(pem, str) or not pem:
        raise CertFetchError(f"{where} has no {api.CERT_CONFIGMAP_KEY}")
    return pem.encode("utf-8")
