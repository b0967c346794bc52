"""Vault Kubernetes auth, the whole real flow: the controller (as its ServiceAccount) asks the
sandbox API server for a TokenRequest token of the ServiceAccount named in the SecretStore,
logs in to OpenBao with it, and OpenBao verifies it by TokenReview against the same API
server. One login serves every refresh."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
from kubernetes import client

from secretsync.kube import Kube
from tests.integration._controller import install_rbac
from tests.integration._external import MARK, World, running_controller, sandbox_world

pytestmark = pytest.mark.integration


@pytest.fixture
def k8s_auth(sandbox: Any, k8s: Any, namespace: str, vault_mount: str) -> Iterator[str]:
    """Configure a kubernetes auth mount in OpenBao for this sandbox; returns its path."""
    core, rbac = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s)
    for sa in ("vault-reviewer", "app-reader", "not-bound"):
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa))
        )
    binding = f"vault-reviewer-{uuid.uuid4().hex[:6]}"
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=binding),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name="system:auth-delegator",
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="ServiceAccount", name="vault-reviewer", namespace=namespace
                )
            ],
        )
    )
    reviewer = core.create_namespaced_service_account_token(
        "vault-reviewer",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status.token
    vault = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])
    path = f"k8s-{uuid.uuid4().hex[:6]}"
    vault.sys.enable_auth_method("kubernetes", path=path)
    vault.auth.kubernetes.configure(
        kubernetes_host=sandbox.server,
        kubernetes_ca_cert=Path(sandbox.ca_file).read_text(),
        token_reviewer_jwt=reviewer,
        disable_local_ca_jwt=True,
        mount_point=path,
    )
    vault.sys.create_or_update_policy(
        f"read-{vault_mount}", f'path "{vault_mount}/*" {{ capabilities = ["read", "list"] }}'
    )
    vault.auth.kubernetes.create_role(
        "app",
        bound_service_account_names=["app-reader"],
        bound_service_account_namespaces=[namespace],
        policies=[f"read-{vault_mount}"],
        ttl="1h",
        mount_point=path,
    )
    try:
        yield path
    finally:
        vault.sys.disable_auth_method(path)
        rbac.delete_cluster_role_binding(binding)


@pytest.fixture
def world(
    sandbox: Any,
    k8s: Any,
    crds: list[str],
    namespace: str,
    vault_mount: str,
    tmp_path: Path,
    token_kubeconfig: Any,
) -> Iterator[World]:
    install_rbac(k8s)
    admin = Kube.from_config(str(sandbox.kubeconfig))
    w = sandbox_world(sandbox, admin, namespace, vault_mount, tmp_path, token_secret=False)
    with running_controller(w, token_kubeconfig):
        yield w


def k8s_store(w: World, auth_path: str, sa: str) -> dict[str, Any]:
    return {
        "vault": {
            "server": w.vault_addr,
            "path": w.mount,
            "auth": {
                "kubernetes": {
                    "mountPath": auth_path,
                    "role": "app",
                    "serviceAccountRef": {"name": sa},
                }
            },
        }
    }


def test_kubernetes_auth_login_once(world: World, k8s_auth: str) -> None:
    w = world
    assert w.controller is not None
    w.put("app/db", {"password": f"k8s-{MARK}"})
    w.apply_store("vault", k8s_store(w, k8s_auth, "app-reader"))
    for i in range(3):
        w.apply_es(
            f"db{i}",
            {
                "refreshInterval": "1s",
                "data": [
                    {
                        "secretKey": "password",
                        "remoteRef": {"key": "app/db", "property": "password"},
                    }
                ],
            },
        )
    for i in range(3):
        w.wait_ready(f"db{i}")
        assert w.data(f"db{i}") == {"password": f"k8s-{MARK}".encode()}
    time.sleep(3)  # several refreshes
    assert (
        w.controller.metric(
            "secretsync_backend_calls_total", backend="vault", operation="login", outcome="ok"
        )
        == 1
    )
    assert (
        w.controller.metric(
            "secretsync_backend_calls_total", backend="vault", operation="get", outcome="ok"
        )
        >= 3
    )


def test_kubernetes_auth_unbound_service_account(world: World, k8s_auth: str) -> None:
    w = world
    w.put("app/db", {"password": f"k8s-{MARK}"})
    w.apply_store("vault", k8s_store(w, k8s_auth, "not-bound"))
    w.apply_es("db", {"data": [{"secretKey": "p", "remoteRef": {"key": "app/db"}}]})
    es = w.wait_ready("db", "False", "StoreNotReady")
    assert "login" in es["status"]["conditions"][0]["message"].lower()
    assert w.secret("db") is None
    store = w.kube.get_custom("secretsync.io", "v1alpha1", "secretstores", w.namespace, "vault")
    cond = (store or {}).get("status", {}).get("conditions", [{}])[0]
    assert cond.get("status") == "False" and cond.get("reason") == "BackendAuthFailed"
