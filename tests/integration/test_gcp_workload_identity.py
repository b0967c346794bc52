"""GCP ``auth.workloadIdentity`` end to end against the sandbox: a TokenRequest for the
store's ServiceAccount from the sandbox API server (audience: the workload identity pool), the
STS token exchange and IAM ``generateAccessToken`` at a loopback Google (``gcp_sts.py``, which
trusts the API server's issuer and ``sa.pub`` as the pool's registered cluster), and the
resulting bearer token presented over TLS to a Secret Manager emulator (``sandbox.gcp_emulator``
run in-process with TLS and token checks) that only lets the right principal read.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud.secretmanager_v1 import types as t
from kubernetes import client

from sandbox import gcp_emulator
from secretsync.backends import gcp
from secretsync.backends.base import Backend, RemoteRef, StoreContext
from secretsync.errors import BackendAuthError, StoreInvalid
from secretsync.kube import Kube
from tests.backends.conformance import BackendConformance, assert_no_leak, dict_resolver
from tests.integration import gcp_sts
from tests.integration._sa_tokens import Requests, read_annotations

pytestmark = pytest.mark.integration

PROJECT = "demo-proj"
GSA = f"reader@{PROJECT}.iam.gserviceaccount.com"
PROVIDER = f"https://container.googleapis.com/v1/projects/{PROJECT}/locations/europe-west1/clusters/c1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def google(sandbox: Any, namespace: str) -> Iterator[gcp_sts.Google]:
    g = gcp_sts.start(gcp_sts.Google(
        project=PROJECT,
        provider=PROVIDER,
        issuer=f"https://127.0.0.1:{sandbox.cfg['ports']['apiserver']}",
        issuer_key_pem=Path(sandbox.cfg["kube"]["sa_pub"]).read_bytes(),
    ))
    g.workload_identity_users[GSA] = {g.member(namespace, "app")}
    g.readers = {f"serviceAccount:{GSA}", g.principal(namespace, "direct")}
    yield g
    g.stop()


@pytest.fixture
def emulator_store() -> gcp_emulator.Store:
    """The emulator's in-memory state, seeded with ``db``; tests write to it directly."""
    store = gcp_emulator.Store()
    write_secret(store, "db", "wi-value")
    return store


def write_secret(store: gcp_emulator.Store, name: str, value: str,
                 labels: dict[str, str] | None = None) -> str:
    parent = f"projects/{PROJECT}/secrets/{name}"
    if parent not in store.secrets:
        store.create_secret(t.CreateSecretRequest(
            parent=f"projects/{PROJECT}", secret_id=name, secret=t.Secret(labels=labels or {})))
    version = store.add_version(t.AddSecretVersionRequest(
        parent=parent, payload=t.SecretPayload(data=value.encode())))
    return str(version.name).rsplit("/", 1)[-1]


@pytest.fixture
def secret_manager(google: gcp_sts.Google, emulator_store: gcp_emulator.Store) -> Iterator[str]:
    """A TLS Secret Manager emulator accepting the loopback Google's tokens; its endpoint."""
    port = free_port()
    server = gcp_emulator.serve(port, tls=(google.cert_pem, google.key_pem),
                                authorize=google.authorize, store=emulator_store)
    yield f"https://127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def accounts(k8s: Any, namespace: str) -> None:
    """``app`` (-> the GSA, bound), ``stranger`` (-> the GSA, not bound), ``direct`` (no
    annotation, a reader itself), ``nobody`` (no annotation, not a reader)."""
    core = client.CoreV1Api(k8s)
    gsa = {"iam.gke.io/gcp-service-account": GSA}
    for name, meta in (("app", gsa), ("stranger", gsa), ("direct", None), ("nobody", None)):
        core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name=name, annotations=meta)))


@pytest.fixture
def kube(sandbox: Any) -> Kube:
    return Kube.from_config(str(sandbox.kubeconfig))


def store(google: gcp_sts.Google, endpoint: str, sa: str, **wi: Any) -> dict[str, Any]:
    return {
        "projectID": PROJECT,
        "endpoint": endpoint,
        "caBundle": base64.b64encode(google.ca_pem).decode(),
        "auth": {"workloadIdentity": {
            "serviceAccountRef": {"name": sa},
            "clusterLocation": "europe-west1",
            "clusterName": "c1",
            "stsEndpoint": google.url,
            "iamCredentialsEndpoint": google.url,
            **wi,
        }},
    }


def ctx_for(namespace: str, provider: dict[str, Any], kube: Kube,
            requests: Requests) -> StoreContext:
    async def annotations(ns: str, sa: str) -> Any:
        return await read_annotations(kube, ns, sa)

    return StoreContext("SecretStore", "gcp-wi", namespace, provider, dict_resolver({}),
                        requests, annotations)


async def read(ctx: StoreContext) -> bytes:
    b = await gcp.create(ctx)
    try:
        await b.validate()
        return await b.get(RemoteRef("db"))
    finally:
        await b.close()


async def test_impersonating_the_annotated_service_account(
    google: gcp_sts.Google, secret_manager: str, accounts: None, kube: Kube, namespace: str
) -> None:
    requests = Requests(kube)
    assert await read(ctx_for(namespace, store(google, secret_manager, "app"), kube,
                              requests)) == b"wi-value"
    assert requests.asked == [(namespace, "app", [f"{PROJECT}.svc.id.goog"], None)]
    assert google.exchanges == [f"identitynamespace:{PROJECT}.svc.id.goog:{PROVIDER}"]
    assert google.impersonations == [GSA]  # one token for validate and get


async def test_federated_token_used_directly_without_annotation(
    google: gcp_sts.Google, secret_manager: str, accounts: None, kube: Kube, namespace: str
) -> None:
    ctx = ctx_for(namespace, store(google, secret_manager, "direct"), kube, Requests(kube))
    assert await read(ctx) == b"wi-value"
    assert google.impersonations == []


@pytest.mark.parametrize(
    ("sa", "wi"),
    [
        ("stranger", {}),  # IAM: not a workloadIdentityUser of the GSA -> 403
        ("nobody", {}),  # Secret Manager: the federated principal may not read
        ("app", {"clusterName": "other"}),  # STS: a cluster the pool does not know
        ("app", {"clusterProjectID": "elsewhere"}),  # STS: token not for that pool
    ],
)
async def test_refused_identities_are_auth_errors(
    google: gcp_sts.Google, secret_manager: str, accounts: None, kube: Kube, namespace: str,
    sa: str, wi: dict[str, Any],
) -> None:
    requests = Requests(kube)
    with pytest.raises(BackendAuthError) as info:
        await read(ctx_for(namespace, store(google, secret_manager, sa, **wi), kube, requests))
    assert_no_leak(info.value, *requests.tokens, *google.tokens)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint": "127.0.0.1:1"}, "credentials are never sent without TLS"),
        ({"wi": {"clusterName": None}}, r"workloadIdentity\.clusterName is required"),
        ({"wi": {"stsEndpoint": "http://127.0.0.1:1"}}, r"stsEndpoint must be https://"),
        ({"wi": {"serviceAccountRef": {"name": "app", "namespace": "x"}}},
         r"serviceAccountRef\.namespace 'x' is not allowed"),
        ({"secretRef": {"secretAccessKeySecretRef": {"name": "k", "key": "k"}}},
         "one of secretRef or workloadIdentity"),
        ({"caBundle": "%%%"}, r"caBundle is not base64 PEM"),
    ],
)
async def test_invalid_store(
    google: gcp_sts.Google, accounts: None, kube: Kube, namespace: str,
    change: dict[str, Any], message: str,
) -> None:
    prov = store(google, "https://127.0.0.1:1", "app")
    wi = prov["auth"]["workloadIdentity"]
    wi.update(change.pop("wi", {}))
    prov["auth"]["workloadIdentity"] = {k: v for k, v in wi.items() if v is not None}
    if "secretRef" in change:
        prov["auth"]["secretRef"] = change.pop("secretRef")
    prov.update(change)
    with pytest.raises(StoreInvalid, match=message) as info:
        await gcp.create(ctx_for(namespace, prov, kube, Requests(kube)))
    assert "SecretStore" in str(info.value)


class TestGcpWorkloadIdentityConformance(BackendConformance):
    """The backend contract through workload identity: TLS, bearer tokens, refresh ahead of
    each call, and refused identities as auth errors."""

    supports_versions = True
    supports_find_by_name = True
    supports_find_by_path = True
    supports_find_by_tags = True
    server_checks_credentials = True  # the emulator only lets the bound identity read
    path_separator = "-"

    @pytest.fixture
    def backend_factory(
        self, google: gcp_sts.Google, secret_manager: str, accounts: None, kube: Kube,
        namespace: str,
    ) -> Callable[[], Awaitable[Backend]]:
        return lambda: gcp.create(
            ctx_for(namespace, store(google, secret_manager, "app"), kube, Requests(kube)))

    @pytest.fixture
    async def bad_auth_backend(
        self, google: gcp_sts.Google, secret_manager: str, accounts: None, kube: Kube,
        namespace: str,
    ) -> AsyncIterator[Backend]:
        b = await gcp.create(
            ctx_for(namespace, store(google, secret_manager, "nobody"), kube, Requests(kube)))
        yield b
        await b.close()

    @pytest.fixture
    async def unreachable_backend(
        self, google: gcp_sts.Google, accounts: None, kube: Kube, namespace: str
    ) -> AsyncIterator[Backend]:
        prov = store(google, f"https://127.0.0.1:{free_port()}", "app")
        b = await gcp.create(ctx_for(namespace, prov, kube, Requests(kube)))
        yield b
        await b.close()

    @pytest.fixture
    def write(self, emulator_store: gcp_emulator.Store) -> Callable[[str, str], Awaitable[str]]:
        async def write(name: str, value: str) -> str:
            return write_secret(emulator_store, name, value)

        return write

    @pytest.fixture
    def write_tagged(
        self, emulator_store: gcp_emulator.Store
    ) -> Callable[[str, str, dict[str, str]], Awaitable[str]]:
        async def write(name: str, value: str, tags: dict[str, str]) -> str:
            return write_secret(emulator_store, name, value, tags)

        return write

    @pytest.fixture
    def rotate(self, write: Any) -> Any:
        return write

    @pytest.fixture
    def delete(self, emulator_store: gcp_emulator.Store) -> Callable[[str], Awaitable[None]]:
        async def delete(name: str) -> None:
            emulator_store.delete_secret(
                t.DeleteSecretRequest(name=f"projects/{PROJECT}/secrets/{name}"))

        return delete
