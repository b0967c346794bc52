"""Vault ``jwt`` auth and ``kubernetes.secretRef`` against OpenBao in the sandbox.

- ``jwt.secretRef``: OpenBao's JWT auth method is configured with an RSA public key this test
  generates (``jwt_validation_pubkeys``); a JWT signed with it, kept in a Secret, logs in; a
  JWT signed with another key, or for another audience, is refused (``BackendAuthError``,
  without the token in the message).
- ``jwt.kubernetesServiceAccountToken``: the same mount also trusts the sandbox API server's
  service-account signing key (``sa.pub``), so a real TokenRequest token of the named
  ServiceAccount logs in; the role binds the default audience ``vault`` and the subject, and
  the requested lifetime reaches the API server.
- ``kubernetes.secretRef``: a ServiceAccount token kept in a Secret (key ``token`` by default)
  logs in to a Kubernetes auth mount, which checks it by TokenReview.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client

from secretsync.backends import registry
from secretsync.backends.base import Backend, RemoteRef, StoreContext
from secretsync.errors import BackendAuthError, KubeError
from secretsync.kube import Kube
from tests.backends.conformance import SENTINEL, assert_no_leak, dict_resolver
from tests.integration._controller import install_rbac
from tests.integration._external import MARK, World
from tests.integration._sa_tokens import Requests
from tests.integration.test_vault_kubernetes_auth import (  # noqa: F401  (fixtures)
    k8s_auth,
    world,
)

pytestmark = pytest.mark.integration

AUDIENCE = "secretsync-test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    """An RS256 JWT (RFC 7515 compact serialization, RFC 7518 section 3.3)."""
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(sig)}"


def claims_of(jwt: str) -> dict[str, Any]:
    body = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwt_mount(
    sandbox: Any, k8s: Any, namespace: str, vault_mount: str, signing_key: rsa.RSAPrivateKey
) -> Iterator[str]:
    """A JWT auth mount trusting the test's key and the API server's service-account key,
    with a role for each kind of token; returns its path."""
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app-reader"))
    )
    vault = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])
    path = f"jwt-{uuid.uuid4().hex[:6]}"
    vault.sys.enable_auth_method("jwt", path=path)
    sa_pub = Path(sandbox.cfg["kube"]["sa_pub"]).read_text()
    vault.auth.jwt.configure(jwt_validation_pubkeys=[pem(signing_key), sa_pub], path=path)
    policy = f"read-{vault_mount}"
    vault.sys.create_or_update_policy(
        policy, f'path "{vault_mount}/*" {{ capabilities = ["read", "list"] }}'
    )
    vault.auth.jwt.create_role(
        "ci", allowed_redirect_uris=[], role_type="jwt", user_claim="sub",
        bound_subject="ci-pipeline", bound_audiences=[AUDIENCE], token_policies=[policy],
        token_ttl="1h", path=path,
    )
    vault.auth.jwt.create_role(
        "app", allowed_redirect_uris=[], role_type="jwt", user_claim="sub",
        bound_subject=f"system:serviceaccount:{namespace}:app-reader",
        bound_audiences=["vault"], token_policies=[policy], token_ttl="1h", path=path,
    )
    try:
        yield path
    finally:
        vault.sys.disable_auth_method(path)


@pytest.fixture
def put(sandbox: Any, vault_mount: str) -> Any:
    vault = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])

    def write(path: str, data: dict[str, str]) -> None:
        vault.secrets.kv.v2.create_or_update_secret(path, secret=data, mount_point=vault_mount)

    return write


async def build(
    sandbox: Any, namespace: str, mount: str, auth: dict[str, Any],
    secrets: dict[tuple[str, str, str], bytes], requests: Requests | None = None,
) -> Backend:
    ctx = StoreContext(
        "SecretStore", "jwt-store", namespace, {}, dict_resolver(secrets), requests
    )
    provider = {"server": sandbox.env["VAULT_ADDR"], "path": mount, "auth": auth}
    _, backend = await registry.build(ctx, {"provider": {"vault": provider}})
    return backend


async def read_once(backend: Backend) -> bytes:
    try:
        await backend.validate()
        return await backend.get(RemoteRef("app/db", property="password"))
    finally:
        await backend.close()


def ci_claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "ci-pipeline", "aud": AUDIENCE, "iat": now, "nbf": now - 5,
            "exp": now + 600, "marker": SENTINEL, **over}


async def test_jwt_from_secret(
    sandbox: Any, namespace: str, vault_mount: str, jwt_mount: str, put: Any,
    signing_key: rsa.RSAPrivateKey,
) -> None:
    put("app/db", {"password": "jwt-secret-ref"})
    token = sign_jwt(signing_key, ci_claims())
    secrets = {(namespace, "ci-jwt", "jwt"): token.encode() + b"\n"}
    auth = {"jwt": {"path": jwt_mount, "role": "ci",
                    "secretRef": {"name": "ci-jwt", "key": "jwt"}}}
    assert await read_once(await build(sandbox, namespace, vault_mount, auth, secrets)) == (
        b"jwt-secret-ref"
    )

    # signed by a key the mount does not trust / for an audience the role does not bind
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (sign_jwt(other, ci_claims()), sign_jwt(signing_key, ci_claims(aud="other"))):
        secrets[(namespace, "ci-jwt", "jwt")] = bad.encode()
        b = await build(sandbox, namespace, vault_mount, auth, secrets)
        with pytest.raises(BackendAuthError, match="JWT login") as info:
            await read_once(b)
        assert_no_leak(info.value, bad, bad.split(".")[1])


async def test_jwt_from_service_account_token_request(
    sandbox: Any, namespace: str, vault_mount: str, jwt_mount: str, put: Any
) -> None:
    put("app/db", {"password": "jwt-token-request"})
    requests = Requests(Kube.from_config(str(sandbox.kubeconfig)))
    auth = {"jwt": {"path": jwt_mount, "role": "app", "kubernetesServiceAccountToken": {
        "serviceAccountRef": {"name": "app-reader"}, "expirationSeconds": 1200}}}
    b = await build(sandbox, namespace, vault_mount, auth, {}, requests)
    assert await read_once(b) == b"jwt-token-request"
    # ESO's default audience, the requested lifetime, the store's namespace
    assert requests.asked == [(namespace, "app-reader", ["vault"], 1200)]
    claims = claims_of(requests.tokens[0])
    assert claims["aud"] == ["vault"] and claims["exp"] - claims["iat"] == 1200

    # a token for another audience is refused by the role's bound_audiences
    auth["jwt"]["kubernetesServiceAccountToken"]["serviceAccountRef"]["audiences"] = ["x"]
    b = await build(sandbox, namespace, vault_mount, auth, {}, requests)
    with pytest.raises(BackendAuthError, match="JWT login") as info:
        await read_once(b)
    assert_no_leak(info.value, requests.tokens[-1])


async def test_kubernetes_auth_token_from_secret(
    sandbox: Any, namespace: str, vault_mount: str, k8s_auth: str, put: Any  # noqa: F811
) -> None:
    put("app/db", {"password": "k8s-secret-ref"})
    kube = Kube.from_config(str(sandbox.kubeconfig))
    good = await asyncio.to_thread(kube.request_token, namespace, "app-reader")
    unbound = await asyncio.to_thread(kube.request_token, namespace, "not-bound")
    secrets = {(namespace, "sa-token", "token"): good.encode(),
               (namespace, "other-token", "token"): unbound.encode()}
    auth = {"kubernetes": {"mountPath": k8s_auth, "role": "app",
                           "secretRef": {"name": "sa-token"}}}  # key defaults to "token"
    b = await build(sandbox, namespace, vault_mount, auth, secrets)
    assert await read_once(b) == b"k8s-secret-ref"

    auth["kubernetes"]["secretRef"] = {"name": "other-token"}
    b = await build(sandbox, namespace, vault_mount, auth, secrets)
    with pytest.raises(BackendAuthError, match="Kubernetes login") as info:
        await read_once(b)
    assert_no_leak(info.value, unbound)


def test_crd_schema_accepts_the_new_modes_and_stays_strict(
    k8s: Any, crds: list[str], namespace: str
) -> None:
    """The SecretStore schema takes jwt (both token sources) and kubernetes.secretRef; an
    unknown field is still rejected by strict server-side validation."""
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(k8s)

    def dry_run(auth: dict[str, Any]) -> None:
        body = {
            "apiVersion": "secretsync.io/v1alpha1", "kind": "SecretStore",
            "metadata": {"name": "s", "namespace": namespace},
            "spec": {"provider": {"vault": {"server": "http://v:8200", "auth": auth}}},
        }
        api.create_namespaced_custom_object(
            "secretsync.io", "v1alpha1", namespace, "secretstores", body,
            dry_run="All", field_validation="Strict",
        )

    sa = {"serviceAccountRef": {"name": "sa", "audiences": ["a"]}}
    dry_run({"jwt": {"path": "jwt", "role": "r", "secretRef": {"name": "j", "key": "k"}}})
    dry_run({"jwt": {"kubernetesServiceAccountToken": {
        **sa, "audiences": ["b"], "expirationSeconds": 900}}})
    dry_run({"kubernetes": {"role": "r", "secretRef": {"name": "t"}}})
    for bad in (
        {"jwt": {"role": "r", "secretRef": {"name": "j", "key": "k"}, "bogus": 1}},
        {"jwt": {"kubernetesServiceAccountToken": {**sa, "expirationSeconds": 60}}},
        {"kubernetes": {"role": "r", "secretRef": {"name": "t", "bogus": "x"}}},
    ):
        with pytest.raises(ApiException) as info:
            dry_run(bad)
        assert info.value.status in (400, 422)


def test_controller_syncs_through_jwt_auth(
    world: World, jwt_mount: str  # noqa: F811
) -> None:
    """The whole path: the strict CRD takes the store, the controller (as its ServiceAccount,
    with the deploy/ RBAC) requests the token with the configured lifetime, logs in once."""
    w = world
    assert w.controller is not None
    w.put("app/db", {"password": f"jwt-{MARK}"})
    w.apply_store("vault", {"vault": {
        "server": w.vault_addr, "path": w.mount,
        "auth": {"jwt": {"path": jwt_mount, "role": "app", "kubernetesServiceAccountToken": {
            "serviceAccountRef": {"name": "app-reader"}, "expirationSeconds": 3600}}},
    }})
    w.apply_es("db", {"data": [
        {"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}]})
    w.wait_ready("db")
    assert w.data("db") == {"password": f"jwt-{MARK}".encode()}
    assert w.controller.metric(
        "secretsync_backend_calls_total", backend="vault", operation="login", outcome="ok"
    ) == 1


def test_controller_rbac_reads_service_accounts(
    sandbox: Any, k8s: Any, namespace: str, tmp_path: Path, token_kubeconfig: Any
) -> None:
    """deploy/rbac-external.yaml lets the controller read the ServiceAccounts GCP and Azure
    workload identity take their identities from (annotations), and nothing more on them."""
    install_rbac(k8s)
    client.CoreV1Api(k8s).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(
            name="app", annotations={"iam.gke.io/gcp-service-account": "a@p.iam"})))
    cfg = token_kubeconfig("secretsync", "secretsync-controller", tmp_path / "kubeconfig")
    kube = Kube.from_config(str(cfg))
    sa = kube.get_service_account(namespace, "app")
    assert sa is not None
    assert sa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": "a@p.iam"}
    with pytest.raises(KubeError):  # get only: no list, no writes
        kube.request("DELETE", f"/api/v1/namespaces/{namespace}/serviceaccounts/app",
                     what="delete ServiceAccount")
