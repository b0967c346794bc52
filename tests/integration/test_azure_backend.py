"""Azure Key Vault backend against the sandbox's Key Vault server (HTTPS, sandbox CA), with a
loopback Entra ID token service (``tests/integration/entra.py``) so the SDK's credentials run
their real flows: the conformance suite (including refused credentials), the Key Vault
specifics (versions, disabled secrets, tags, ``secret/`` references) and every auth type:
service principal with a client secret or a certificate, managed identity, workload identity.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient
from prometheus_client import REGISTRY

from secretsync.backends import azure
from secretsync.backends.azure.backend import API_VERSION
from secretsync.backends.base import Backend, FindQuery, RemoteRef, StoreContext
from secretsync.errors import BackendAuthError, BackendUnavailable, SecretNotFound, StoreInvalid
from tests.backends.conformance import (
    SENTINEL,
    BackendConformance,
    assert_no_leak,
    dict_resolver,
)
from tests.integration import entra

pytestmark = pytest.mark.integration

NS = "team-z"
# the tenant the sandbox vault names in its 401 challenge
TENANT = "00000000-0000-0000-0000-000000000000"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "sp-secret-" + SENTINEL
CERT_CLIENT_ID = "66666666-7777-8888-9999-000000000000"
WI_CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
WI_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6eCJ9.c2ln"


class StaticToken:
    """The test's own seeding client needs some bearer token; the sandbox vault takes any."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("seed-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def identity() -> Iterator[Any]:
    pem, cert = entra.self_signed_client_cert()
    e = entra.start(
        entra.Entra(
            secrets={CLIENT_ID: CLIENT_SECRET},
            certificates={CERT_CLIENT_ID: cert},
            federated={WI_CLIENT_ID: WI_TOKEN},
        )
    )
    e.client_pem = pem
    yield e
    e.stop()


@pytest.fixture
def vault(sandbox: Any) -> str:
    return str(sandbox.env["AZURE_KEYVAULT_URL"])


@pytest.fixture
def ca_bundle(sandbox: Any, identity: Any) -> str:
    """base64 PEM bundle: the sandbox CA (vault) and the token service's CA."""
    return base64.b64encode(Path(sandbox.ca_file).read_bytes() + identity.ca_pem).decode()


@pytest.fixture
def secrets(identity: Any) -> dict[tuple[str, str, str], bytes]:
    return {
        (NS, "sp", "client-id"): CLIENT_ID.encode(),
        (NS, "sp", "client-secret"): CLIENT_SECRET.encode() + b"\n",
        (NS, "sp", "wrong-secret"): b"not-the-secret",
        (NS, "sp-cert", "client-id"): CERT_CLIENT_ID.encode(),
        (NS, "sp-cert", "tls.pem"): identity.client_pem,
    }


def ctx_for(
    provider: Mapping[str, Any], secrets: Mapping[tuple[str, str, str], bytes]
) -> StoreContext:
    return StoreContext("SecretStore", "az-store", NS, provider, dict_resolver(secrets))


@pytest.fixture
def base(vault: str, ca_bundle: str, identity: Any) -> dict[str, Any]:
    """A store pointing at the sandbox vault, with Entra ID at the loopback token service."""
    return {
        "vaultUrl": vault,
        "tenantId": TENANT,
        "caBundle": ca_bundle,
        "environmentType": "AzureStackCloud",
        "customCloudConfig": {"activeDirectoryEndpoint": identity.url},
    }


def sp(secret_key: str = "client-secret") -> dict[str, Any]:
    return {
        "authSecretRef": {
            "clientId": {"name": "sp", "key": "client-id"},
            "clientSecret": {"name": "sp", "key": secret_key},
        }
    }


@pytest.fixture
async def seed(vault: str, sandbox: Any) -> AsyncIterator[Any]:
    """The SDK client the tests write with; deletes and purges what they created."""
    client = SecretClient(
        vault,
        StaticToken(),
        api_version=API_VERSION,
        verify_challenge_resource=False,
        connection_verify=str(sandbox.ca_file),
    )
    created: set[str] = set()
    client.created = created
    yield client
    for name in created:
        with contextlib.suppress(ResourceNotFoundError):  # the test deleted it already
            await client.delete_secret(name)
        with contextlib.suppress(ResourceNotFoundError):
            await client.purge_deleted_secret(name)
    await client.close()


async def put(seed: Any, name: str, value: str, tags: dict[str, str] | None = None) -> str:
    seed.created.add(name)
    secret = await seed.set_secret(name, value, tags=tags)
    return str(secret.properties.version)


# --- conformance ---------------------------------------------------------------------------


class TestAzureConformance(BackendConformance):
    supports_versions = True
    supports_find_by_name = True
    supports_find_by_path = True  # a name prefix: names have no hierarchy
    supports_find_by_tags = True
    server_checks_credentials = True  # the token service refuses a wrong client secret
    path_separator = "-"  # names are [0-9A-Za-z-]

    @pytest.fixture
    def backend_factory(
        self, base: dict[str, Any], secrets: dict[Any, bytes]
    ) -> Callable[[], Awaitable[Backend]]:
        return lambda: azure.create(ctx_for({**base, **sp()}, secrets))

    @pytest.fixture
    async def bad_auth_backend(
        self, base: dict[str, Any], secrets: dict[Any, bytes]
    ) -> AsyncIterator[Backend]:
        b = await azure.create(ctx_for({**base, **sp("wrong-secret")}, secrets))
        yield b
        await b.close()

    @pytest.fixture
    async def unreachable_backend(
        self, base: dict[str, Any], secrets: dict[Any, bytes]
    ) -> AsyncIterator[Backend]:
        prov = {**base, **sp(), "vaultUrl": f"https://127.0.0.1:{free_port()}"}
        b = await azure.create(ctx_for(prov, secrets))
        yield b
        await b.close()

    @pytest.fixture
    def write(self, seed: Any) -> Callable[[str, str], Awaitable[str]]:
        return lambda name, value: put(seed, name, value)

    @pytest.fixture
    def write_tagged(self, seed: Any) -> Callable[[str, str, dict[str, str]], Awaitable[str]]:
        return lambda name, value, tags: put(seed, name, value, tags)

    @pytest.fixture
    def rotate(self, seed: Any) -> Callable[[str, str], Awaitable[str]]:
        return lambda name, value: put(seed, name, value)

    @pytest.fixture
    def delete(self, seed: Any) -> Callable[[str], Awaitable[Any]]:
        return seed.delete_secret


# --- Key Vault specifics -------------------------------------------------------------------


@pytest.fixture
async def backend(base: dict[str, Any], secrets: dict[Any, bytes]) -> AsyncIterator[Any]:
    b = await azure.create(ctx_for({**base, **sp()}, secrets))
    yield b
    await b.close()


async def test_disabled_secret_and_version(seed: Any, backend: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-dis"
    v1 = await put(seed, name, json.dumps({"pw": SENTINEL}))
    v2 = await put(seed, name, json.dumps({"pw": "two"}))
    await seed.update_secret_properties(name, v1, enabled=False)
    with pytest.raises(SecretNotFound, match="disabled") as info:
        await backend.get(RemoteRef(name, version=v1))
    assert_no_leak(info.value)
    assert await backend.get(RemoteRef(name, property="pw")) == b"two"
    await seed.update_secret_properties(name, v2, enabled=False)
    with pytest.raises(SecretNotFound, match="the secret is disabled in Azure Key Vault"):
        await backend.get(RemoteRef(name))
    # a disabled secret is left out of find
    assert await backend.find(FindQuery(path=name)) == {}


async def test_secret_reference_forms(seed: Any, backend: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-ref"
    await put(seed, name, "plain text, not JSON")
    assert await backend.get(RemoteRef(f"secret/{name}")) == b"plain text, not JSON"
    with pytest.raises(SecretNotFound, match="not supported"):
        await backend.get(RemoteRef(f"cert/{name}"))


async def test_find_tags_and_prefix(seed: Any, backend: Any, name_prefix: str) -> None:
    await put(seed, f"{name_prefix}-a", "A", {"team": name_prefix, "tier": "db"})
    await put(seed, f"{name_prefix}-b", "B", {"team": name_prefix, "tier": "web"})
    await put(seed, f"{name_prefix}-c", "C", {"team": "other"})
    assert await backend.find(FindQuery(tags={"team": name_prefix})) == {
        f"{name_prefix}-a": b"A",
        f"{name_prefix}-b": b"B",
    }
    assert await backend.find(FindQuery(path=name_prefix, tags={"tier": "web"})) == {
        f"{name_prefix}-b": b"B"
    }
    assert set(await backend.find(FindQuery(path=name_prefix, name_regexp="-[ac]$"))) == {
        f"{name_prefix}-a",
        f"{name_prefix}-c",
    }


async def test_metrics(seed: Any, backend: Any, name_prefix: str) -> None:
    def sample(outcome: str) -> float:
        labels = {"backend": "azurekv", "operation": "get", "outcome": outcome}
        return REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) or 0.0

    await put(seed, f"{name_prefix}-m", "x")
    ok, missing = sample("ok"), sample("not_found")
    await backend.get(RemoteRef(f"{name_prefix}-m"))
    with pytest.raises(SecretNotFound):
        await backend.get(RemoteRef(f"{name_prefix}-absent"))
    assert (sample("ok"), sample("not_found")) == (ok + 1, missing + 1)


# --- auth types ----------------------------------------------------------------------------


async def validate_and_read(prov: dict[str, Any], secrets: Any, seed: Any, name: str) -> None:
    await put(seed, name, '{"k":"v"}')
    b = await azure.create(ctx_for(prov, secrets))
    try:
        await b.validate()
        assert await b.get(RemoteRef(name, property="k")) == b"v"
    finally:
        await b.close()


async def test_service_principal_certificate(
    base: dict[str, Any], secrets: Any, seed: Any, identity: Any, name_prefix: str
) -> None:
    before = identity.issued
    prov = {
        **base,
        "authSecretRef": {
            "clientId": {"name": "sp-cert", "key": "client-id"},
            "clientCertificate": {"name": "sp-cert", "key": "tls.pem"},
        },
    }
    await validate_and_read(prov, secrets, seed, f"{name_prefix}-cert")
    assert identity.issued == before + 1  # one token, reused for both calls


async def test_managed_identity(
    base: dict[str, Any],
    secrets: Any,
    seed: Any,
    identity: Any,
    monkeypatch: pytest.MonkeyPatch,
    name_prefix: str,
) -> None:
    # what App Service / Arc-style hosts inject; the credential calls this endpoint
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{identity.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", identity.identity_header)
    before = identity.issued
    prov = {**base, "authType": "ManagedIdentity"}
    await validate_and_read(prov, secrets, seed, f"{name_prefix}-mi")
    assert identity.issued == before + 1


async def test_workload_identity(
    base: dict[str, Any],
    secrets: Any,
    seed: Any,
    identity: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name_prefix: str,
) -> None:
    # what the workload identity webhook injects into the controller pod
    token = tmp_path / "azure-identity-token"
    token.write_text(WI_TOKEN)
    monkeypatch.setenv("AZURE_CLIENT_ID", WI_CLIENT_ID)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token))
    prov = {k: v for k, v in base.items() if k != "tenantId"}
    await validate_and_read(
        {**prov, "authType": "WorkloadIdentity"}, secrets, seed, f"{name_prefix}-wi"
    )
    # a token the federation does not know is refused
    token.write_text("eyJ.unknown.token")
    b = await azure.create(ctx_for({**prov, "authType": "WorkloadIdentity"}, secrets))
    try:
        with pytest.raises(BackendAuthError):
            await b.validate()
    finally:
        await b.close()


async def test_without_ca_bundle_tls_fails_clearly(base: dict[str, Any], secrets: Any) -> None:
    prov = {k: v for k, v in {**base, **sp()}.items() if k != "caBundle"}
    b = await azure.create(ctx_for(prov, secrets))
    try:
        with pytest.raises(
            BackendUnavailable, match=r"TLS verification .* set spec\.provider\.azurekv\.caBundle"
        ):
            await b.validate()
    finally:
        await b.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vaultUrl": None}, r"spec\.provider\.azurekv\.vaultUrl is required"),
        ({"vaultUrl": "http://127.0.0.1:1"}, "vaultUrl must be https://"),
        ({"tenantId": None}, "tenantId is required for ServicePrincipal"),
        ({"authType": "Kerberos"}, "authType must be ServicePrincipal"),
        ({"environmentType": "Mars"}, "environmentType must be one of"),
        ({"customCloudConfig": {}}, r"customCloudConfig\.activeDirectoryEndpoint is required"),
        ({"caBundle": "%%%"}, "caBundle is not base64 PEM"),
        ({"caBundle": base64.b64encode(b"hello").decode()}, "caBundle holds no PEM"),
        ({"authSecretRef": {"clientId": {"name": "sp", "key": "client-id"}}}, "exactly one of"),
        (
            {"authSecretRef": {"clientSecret": {"name": "sp", "key": "client-secret"}}},
            r"authSecretRef\.clientId is required",
        ),
        (
            {"authType": "WorkloadIdentity", "serviceAccountRef": {"name": "sa", "namespace": "x"}},
            r"serviceAccountRef\.namespace 'x' is not allowed",
        ),
        ({"tenantId": "not a tenant!"}, "invalid ServicePrincipal settings"),
    ],
)
async def test_invalid_store(
    base: dict[str, Any], secrets: Any, change: dict[str, Any], message: str
) -> None:
    prov = {k: v for k, v in {**base, **sp(), **change}.items() if v is not None}
    with pytest.raises(StoreInvalid, match=message) as info:
        await azure.create(ctx_for(prov, secrets))
    assert "SecretStore team-z/az-store" in str(info.value)
    assert_no_leak(info.value, CLIENT_SECRET)


async def test_entry_point_builds_the_backend(base: dict[str, Any], secrets: Any) -> None:
    from secretsync.backends import registry

    b = await registry.factory_for("azurekv")(ctx_for({**base, **sp()}, secrets))
    try:
        assert isinstance(b, azure.AzureBackend)
        await b.validate()
    finally:
        await b.close()
