"""GCP Secret Manager backend against the sandbox's Secret Manager server (plaintext gRPC):
the conformance suite, the GCP-specific behaviour (numbered versions, disabled / destroyed
versions, labels, full resource names, binary payloads) and the store/auth configurations
that can be exercised without Google's token service.

The sandbox server does not check credentials (like every Secret Manager emulator), so the
PermissionDenied / Unauthenticated mapping is covered in ``tests/unit/test_cloud_gcp.py``.
A service-account key and ADC are exercised up to building the client (the key file is
parsed, the project is taken from it); fetching a token needs Google and is not run here.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core.exceptions import NotFound
from google.cloud.secretmanager_v1 import SecretManagerServiceAsyncClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcAsyncIOTransport,
)
from prometheus_client import REGISTRY

from secretsync.backends import gcp
from secretsync.backends.base import Backend, FindQuery, RemoteRef, StoreContext
from secretsync.errors import BackendAuthError, BackendUnavailable, SecretNotFound, StoreInvalid
from tests.backends.conformance import (
    SENTINEL,
    BackendConformance,
    assert_no_leak,
    dict_resolver,
)

pytestmark = pytest.mark.integration

NS = "team-g"
PROJECT = "secretsync-test"


def ctx_for(
    provider: Mapping[str, Any], secrets: Mapping[tuple[str, str, str], bytes] | None = None
) -> StoreContext:
    return StoreContext("SecretStore", "gcp-store", NS, provider, dict_resolver(secrets or {}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def endpoint(sandbox: Any) -> str:
    return str(sandbox.env["GCP_SECRET_MANAGER_GRPC"])


@pytest.fixture
async def admin(endpoint: str) -> AsyncIterator[Any]:
    """A plain SDK client to seed the server; deletes what the test created."""
    channel = grpc.aio.insecure_channel(endpoint)
    client = SecretManagerServiceAsyncClient(
        transport=SecretManagerServiceGrpcAsyncIOTransport(channel=channel)
    )
    created: list[str] = []
    client.created = created
    yield client
    for name in created:
        try:
            await client.delete_secret(name=name)
        except NotFound:  # already deleted by the test
            pass
    await client.transport.close()


async def create_secret(admin: Any, name: str, labels: dict[str, str] | None = None) -> str:
    secret = await admin.create_secret(
        parent=f"projects/{PROJECT}",
        secret_id=name,
        secret={"replication": {"automatic": {}}, "labels": labels or {}},
    )
    admin.created.append(secret.name)
    return str(secret.name)


async def add_version(admin: Any, name: str, data: bytes) -> str:
    version = await admin.add_secret_version(
        parent=f"projects/{PROJECT}/secrets/{name}", payload={"data": data}
    )
    return str(version.name).rsplit("/", 1)[-1]


def store(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"projectID": PROJECT, "endpoint": endpoint, **extra}


# --- conformance ---------------------------------------------------------------------------


class TestGcpConformance(BackendConformance):
    supports_versions = True
    supports_find_by_name = True
    supports_find_by_path = True  # a name prefix: secret ids have no hierarchy
    supports_find_by_tags = True  # labels
    # the sandbox server accepts any caller; see the module docstring
    server_checks_credentials = False
    path_separator = "-"  # "/" is not allowed in secret ids

    @pytest.fixture
    def backend_factory(self, endpoint: str) -> Callable[[], Awaitable[Backend]]:
        return lambda: gcp.create(ctx_for(store(endpoint)))

    @pytest.fixture
    async def unreachable_backend(self) -> Backend:
        return await gcp.create(ctx_for(store(f"127.0.0.1:{free_port()}")))

    @pytest.fixture
    def write(self, admin: Any) -> Callable[[str, str], Awaitable[str]]:
        async def write(name: str, value: str) -> str:
            await create_secret(admin, name)
            return await add_version(admin, name, value.encode())

        return write

    @pytest.fixture
    def write_tagged(self, admin: Any) -> Callable[[str, str, dict[str, str]], Awaitable[str]]:
        async def write(name: str, value: str, tags: dict[str, str]) -> str:
            await create_secret(admin, name, tags)
            return await add_version(admin, name, value.encode())

        return write

    @pytest.fixture
    def rotate(self, admin: Any) -> Callable[[str, str], Awaitable[str]]:
        return lambda name, value: add_version(admin, name, value.encode())

    @pytest.fixture
    def delete(self, admin: Any) -> Callable[[str], Awaitable[None]]:
        async def delete(name: str) -> None:
            await admin.delete_secret(name=f"projects/{PROJECT}/secrets/{name}")

        return delete


# --- GCP specifics -------------------------------------------------------------------------


@pytest.fixture
async def backend(endpoint: str) -> AsyncIterator[Any]:
    b = await gcp.create(ctx_for(store(endpoint)))
    yield b
    await b.close()


async def test_disabled_and_destroyed_versions(admin: Any, backend: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-states"
    full = await create_secret(admin, name)
    v1 = await add_version(admin, name, json.dumps({"pw": SENTINEL}).encode())
    await add_version(admin, name, b'{"pw":"two"}')
    await admin.disable_secret_version(name=f"{full}/versions/{v1}")
    with pytest.raises(
        SecretNotFound, match=r"version '1': the version is DISABLED; enable it"
    ) as info:
        await backend.get(RemoteRef(name, version=v1))
    assert_no_leak(info.value)
    # the newest version is unaffected
    assert await backend.get(RemoteRef(name, property="pw")) == b"two"
    await admin.enable_secret_version(name=f"{full}/versions/{v1}")
    assert await backend.get(RemoteRef(name, property="pw", version="1")) == SENTINEL.encode()
    await admin.destroy_secret_version(name=f"{full}/versions/{v1}")
    with pytest.raises(SecretNotFound, match="the version is DESTROYED") as info:
        await backend.get(RemoteRef(name, version=v1))
    assert_no_leak(info.value)


async def test_version_forms_and_full_names(admin: Any, backend: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-forms"
    full = await create_secret(admin, name)
    await add_version(admin, name, b"first")
    await add_version(admin, name, b"second")
    assert await backend.get(RemoteRef(name, version="versions/1")) == b"first"
    assert await backend.get(RemoteRef(name, version="latest")) == b"second"
    assert await backend.get(RemoteRef(full)) == b"second"
    assert await backend.get(RemoteRef(f"{full}/versions/1", version="1")) == b"first"


async def test_binary_payload(admin: Any, backend: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-bin"
    raw = bytes(range(256))
    await create_secret(admin, name)
    await add_version(admin, name, raw)
    assert await backend.get(RemoteRef(name)) == raw


async def test_find_labels_prefix_and_unreadable(
    admin: Any, backend: Any, name_prefix: str
) -> None:
    team = name_prefix.lower()
    await create_secret(admin, f"{name_prefix}-db", {"team": team, "tier": "db"})
    await add_version(admin, f"{name_prefix}-db", b"db-value")
    await create_secret(admin, f"{name_prefix}-web", {"team": team, "tier": "web"})
    await add_version(admin, f"{name_prefix}-web", b"web-value")
    # a secret with no version yet, and one whose only version is disabled: no value to sync
    await create_secret(admin, f"{name_prefix}-empty", {"team": team})
    full = await create_secret(admin, f"{name_prefix}-off", {"team": team})
    off = await add_version(admin, f"{name_prefix}-off", b"off-value")
    await admin.disable_secret_version(name=f"{full}/versions/{off}")

    assert await backend.find(FindQuery(tags={"team": team})) == {
        f"{name_prefix}-db": b"db-value",
        f"{name_prefix}-web": b"web-value",
    }
    assert await backend.find(FindQuery(tags={"team": team, "tier": "db"})) == {
        f"{name_prefix}-db": b"db-value"
    }
    assert set(await backend.find(FindQuery(path=name_prefix, name_regexp="-w.b$"))) == {
        f"{name_prefix}-web"
    }


async def test_metrics_count_outcomes(admin: Any, backend: Any, name_prefix: str) -> None:
    def sample(outcome: str) -> float:
        labels = {"backend": "gcpsm", "operation": "get", "outcome": outcome}
        return REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) or 0.0

    name = f"{name_prefix}-m"
    await create_secret(admin, name)
    await add_version(admin, name, b"x")
    ok, missing = sample("ok"), sample("not_found")
    await backend.get(RemoteRef(name))
    with pytest.raises(SecretNotFound):
        await backend.get(RemoteRef(name + "-absent"))
    assert (sample("ok"), sample("not_found")) == (ok + 1, missing + 1)


async def test_unreachable_is_unavailable(endpoint: str) -> None:
    b = await gcp.create(ctx_for(store(f"http://127.0.0.1:{free_port()}")))
    labels = {"backend": "gcpsm", "operation": "validate", "outcome": "unavailable"}
    before = REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) or 0.0
    try:
        with pytest.raises(BackendUnavailable, match="retry"):
            await b.validate()
    finally:
        await b.close()
    assert REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) == before + 1


async def test_entry_point_builds_the_backend(endpoint: str) -> None:
    from secretsync.backends import registry

    b = await registry.factory_for("gcpsm")(ctx_for(store(endpoint)))
    try:
        assert isinstance(b, gcp.GcpBackend)
        await b.validate()
    finally:
        await b.close()


# --- store and auth configurations ---------------------------------------------------------


def sa_key(project: str = "key-project") -> bytes:
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": project,
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": f"reader@{project}.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    ).encode()


KEY_REF = {"secretRef": {"secretAccessKeySecretRef": {"name": "gcp-sa", "key": "key.json"}}}


@pytest.fixture
def no_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No ambient Google credentials, and never probe a metadata server off loopback."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{free_port()}")
    return monkeypatch


async def test_service_account_key_from_secret() -> None:
    secrets = {(NS, "gcp-sa", "key.json"): sa_key()}
    # a TLS endpoint on loopback: the client is built, nothing is sent
    prov = {"endpoint": f"https://127.0.0.1:{free_port()}", "auth": KEY_REF}
    b = await gcp.create(ctx_for(prov, secrets))
    try:
        assert isinstance(b, gcp.GcpBackend)
        assert b.project == "key-project"  # taken from the key when projectID is omitted
        creds = b._client.transport._credentials
        assert creds.service_account_email == "reader@key-project.iam.gserviceaccount.com"
    finally:
        await b.close()


async def test_adc_from_key_file(no_adc: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "adc.json"
    key.write_bytes(sa_key("adc-project"))
    no_adc.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    b = await gcp.create(ctx_for({}))
    try:
        assert isinstance(b, gcp.GcpBackend) and b.project == "adc-project"
    finally:
        await b.close()


async def test_no_adc_is_auth_error(no_adc: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendAuthError, match="no Application Default Credentials"):
        await gcp.create(ctx_for({"projectID": PROJECT}))


@pytest.mark.parametrize(
    ("provider", "secrets", "message"),
    [
        ({"endpoint": "127.0.0.1:1"}, {}, r"spec\.provider\.gcpsm\.projectID is required"),
        (
            {"projectID": PROJECT, "endpoint": "127.0.0.1:1", "auth": KEY_REF},
            {(NS, "gcp-sa", "key.json"): b"{}"},
            "credentials are never sent without TLS",
        ),
        (
            {"projectID": PROJECT, "auth": {"workloadIdentity": {"clusterName": "c"}}},
            {},
            r"workloadIdentity\.serviceAccountRef is required",
        ),
        (
            {"projectID": PROJECT, "auth": {"secretRef": {}}},
            {},
            "",  # an empty secretRef is the same as no auth: needs ADC (checked separately)
        ),
        (
            {"projectID": PROJECT, "auth": KEY_REF},
            {(NS, "gcp-sa", "key.json"): b"not json " + SENTINEL.encode()},
            "the service-account key is not JSON",
        ),
        (
            {"projectID": PROJECT, "auth": KEY_REF},
            {(NS, "gcp-sa", "key.json"): json.dumps({"private_key": SENTINEL}).encode()},
            "lacks client_email, token_uri",
        ),
    ],
)
async def test_invalid_store(
    no_adc: pytest.MonkeyPatch,
    provider: dict[str, Any],
    secrets: dict[tuple[str, str, str], bytes],
    message: str,
) -> None:
    if not message:
        with pytest.raises(BackendAuthError):
            await gcp.create(ctx_for(provider, secrets))
        return
    with pytest.raises(StoreInvalid, match=message) as info:
        await gcp.create(ctx_for(provider, secrets))
    assert "SecretStore team-g/gcp-store" in str(info.value)
    assert_no_leak(info.value)
