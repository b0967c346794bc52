"""`make demo`, second half: an ExternalSecret from the sandbox's OpenBao (the Vault API).

A KV v2 mount with one dummy value, a SecretStore with token auth (the root token in a Secret,
as the integration tests do), a Deployment, and an ExternalSecret (refreshInterval 2s) whose
``rolloutRestartTargets`` names it; then the value is rotated in Vault and the demo waits for
the Secret to follow and for the Deployment to be restarted. The sandbox runs no scheduler and
no kubelet: pods are created but stay Pending, so the restart is shown as what Kubernetes does
with it -- the ``secretsync.io/restartedAt`` pod-template annotation, a new rollout revision
and a new ReplicaSet. Secret values are never printed. Also ``until`` and ``DemoFailed``,
which ``sandbox.demo`` uses too.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from secretsync import api

if TYPE_CHECKING:
    from secretsync.kube import Kube

T = TypeVar("T")
Step = Callable[..., None]  # step(text, *detail_lines): prints "[ 1.2s] text"
ANN_RESTARTED_AT = f"{api.GROUP}/restartedAt"
ANN_REVISION = "deployment.kubernetes.io/revision"
REFRESH = "2s"


class DemoFailed(RuntimeError):
    """A step did not happen; the message is the one line the demo prints."""


def until(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """``check()`` until it returns something truthy; DemoFailed naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class Vault:
    """The few OpenBao/Vault HTTP calls the demo makes (sandbox root token)."""

    def __init__(self, addr: str, token: str) -> None:
        self.addr, self.token = addr.rstrip("/"), token

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.addr}/v1/{path}", data=data, method=method,
                                     headers={"X-Vault-Token": self.token})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            raise DemoFailed(f"Vault {method} /v1/{path}: HTTP {exc.code}") from None
        except OSError as exc:
            raise DemoFailed(f"Vault {method} /v1/{path}: {exc}") from None
        out = json.loads(text) if text.strip() else {}
        return out if isinstance(out, dict) else {}

    @contextmanager
    def kv2_mount(self, mount: str) -> Iterator[str]:
        """A fresh KV v2 secrets engine at ``mount``, disabled afterwards."""
        self.call("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "2"}})
        try:
            yield mount
        finally:
            try:
                self.call("DELETE", f"sys/mounts/{mount}")
            except DemoFailed:
                pass  # the sandbox's OpenBao keeps everything in memory anyway

    def put(self, mount: str, path: str, data: dict[str, str]) -> int:
        """Write a new version; its number."""
        return int(self.call("POST", f"{mount}/data/{path}", {"data": data})["data"]["version"])


def _apps(kube: Kube, namespace: str, plural: str, name: str = "") -> dict[str, Any]:
    path = f"/apis/apps/v1/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")
    return kube.request("GET", path)


def _replicaset(kube: Kube, namespace: str, deployment: str, revision: str
                ) -> dict[str, Any] | None:
    """The Deployment's ReplicaSet of that rollout revision, once the controller-manager made
    it."""
    for rs in _apps(kube, namespace, "replicasets").get("items") or []:
        meta = rs["metadata"]
        owners = {o.get("name") for o in meta.get("ownerReferences") or []}
        if deployment in owners and (meta.get("annotations") or {}).get(ANN_REVISION) == revision:
            return dict(rs)
    return None


def _pods_of(kube: Kube, namespace: str, rs_name: str) -> list[dict[str, Any]]:
    pods = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods").get("items") or []
    return [p for p in pods if any(o.get("name") == rs_name
                                   for o in p["metadata"].get("ownerReferences") or [])]


def _ready(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    es = kube.get_custom(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, namespace, name) or {}
    for c in (es.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return dict(c)
    return None


def run(kube: Kube, namespace: str, vault: Vault, step: Step) -> None:
    """The ExternalSecret story in ``namespace`` (which the controller watches)."""
    with vault.kv2_mount(f"{namespace}-kv") as mount:
        _story(kube, namespace, vault, mount, step)


def _story(kube: Kube, ns: str, vault: Vault, mount: str, step: Step) -> None:
    # dummy values, never printed: a fresh random one per run and rotation
    first = f"demo-api-key-{secrets.token_hex(8)}"
    version = vault.put(mount, "app/api", {"api-key": first})
    step(f"Vault: wrote app/api (KV v2 mount {mount}, version {version}; value not shown)")

    kube.create_secret(ns, {"metadata": {"name": "vault-token"},
                            "data": {"token": base64.b64encode(vault.token.encode()).decode()}})
    kube.apply({"apiVersion": api.API_VERSION, "kind": api.KIND_STORE,
                "metadata": {"name": "vault", "namespace": ns},
                "spec": {"provider": {"vault": {
                    "server": vault.addr, "path": mount,
                    "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}}}}}},
               plural=api.PLURAL_STORE)
    kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "web",
                                                               "image": "busybox"}]}}}})
    rs1 = until("the Deployment's first ReplicaSet", lambda: _replicaset(kube, ns, "web", "1"))
    step("SecretStore vault (token auth via Secret vault-token) and Deployment web created",
         f"Deployment web: rollout revision 1, ReplicaSet {rs1['metadata']['name']}")

    kube.apply({"apiVersion": api.API_VERSION, "kind": api.KIND_EXTERNAL,
                "metadata": {"name": "api-credentials", "namespace": ns},
                "spec": {"secretStoreRef": {"name": "vault"}, "refreshInterval": REFRESH,
                         "data": [{"secretKey": "api-key",
                                   "remoteRef": {"key": "app/api", "property": "api-key"}}],
                         "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]}},
               plural=api.PLURAL_EXTERNAL)
    until("Secret api-credentials to hold Vault's value",
          lambda: kube.read_secret_key(ns, "api-credentials", "api-key") == first.encode())
    until("ExternalSecret api-credentials Ready", lambda: _ready(kube, ns, "api-credentials"))
    step(f"ExternalSecret api-credentials (refreshInterval {REFRESH}) Ready: Secret "
         f"{ns}/api-credentials holds Vault's version {version}")

    second = f"demo-api-key-{secrets.token_hex(8)}"
    version = vault.put(mount, "app/api", {"api-key": second})
    step(f"Vault: rotated app/api (version {version})")

    until("the Secret to follow the rotation",
          lambda: kube.read_secret_key(ns, "api-credentials", "api-key") == second.encode(), 20)
    step(f"Secret {ns}/api-credentials updated to version {version} (next refresh)")

    def restarted() -> tuple[str, dict[str, Any]] | None:
        dep = _apps(kube, ns, "deployments", "web")
        stamp = (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(
            ANN_RESTARTED_AT)
        rs = _replicaset(kube, ns, "web", "2") if stamp else None
        return (str(stamp), rs) if rs else None

    stamp, rs2 = until("the Deployment's rollout restart", restarted, 20)
    pods = until("the new ReplicaSet's pod",
                 lambda: _pods_of(kube, ns, rs2["metadata"]["name"]), 10)
    step("Deployment web restarted: rollout revision 1 -> 2",
         f"pod template annotated {ANN_RESTARTED_AT}={stamp}",
         f"new ReplicaSet {rs2['metadata']['name']} created pod {pods[0]['metadata']['name']}",
         f"(it stays {pods[0].get('status', {}).get('phase', 'Pending')}: the sandbox has no "
         "scheduler or kubelet, so no pod runs; in a cluster the new pods replace the old)")
