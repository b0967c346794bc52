"""The Vault backend against the sandbox's real OpenBao: conformance (KV v2 and v1), AppRole
login and token reuse/renewal, namespace/CA config errors, and the registry's build path."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import hvac
import pytest

from secretsync.backends import registry
from secretsync.backends.base import Backend, RemoteRef, StoreContext
from secretsync.backends.vault import VaultBackend
from secretsync.errors import BackendAuthError, BackendUnavailable, StoreInvalid
from tests.backends.conformance import (
    SENTINEL,
    BackendConformance,
    assert_no_leak,
    dict_resolver,
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def build_vault(
    provider: dict[str, Any], secrets: dict[tuple[str, str, str], bytes], request_token: Any = None
) -> Backend:
    ctx = StoreContext(
        store_kind="SecretStore",
        store_name="test",
        namespace="ns",
        provider={},
        resolve_secret=dict_resolver(secrets),
        request_token=request_token,
    )
    name, backend = await registry.build(ctx, {"provider": {"vault": provider}})
    assert name == "vault"
    return backend


@pytest.fixture(scope="module")
def admin(sandbox: Any) -> hvac.Client:
    return hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])


def token_store(addr: str, mount: str, version: str = "v2") -> dict[str, Any]:
    return {
        "server": addr,
        "path": mount,
        "version": version,
        "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}},
    }


def approle_store(addr: str, mount: str, approle_path: str, role_id: str) -> dict[str, Any]:
    """A provider block logging in with AppRole; the secret id is resolved from Secret
    ``ar``/``secret-id`` (see ``build_vault``'s resolver)."""
    return {
        "server": addr,
        "path": mount,
        "auth": {
            "appRole": {
                "path": approle_path,
                "roleId": role_id,
                "secretRef": {"name": "ar", "key": "secret-id"},
            }
        },
    }


class _VaultBase(BackendConformance):
    kv_version = "v2"

    @pytest.fixture
    def mount(self, vault_mount: str) -> str:
        return vault_mount

    @pytest.fixture
    def backend_factory(self, sandbox: Any, mount: str) -> Callable[[], Awaitable[Backend]]:
        env = sandbox.env

        async def make() -> Backend:
            return await build_vault(
                token_store(env["VAULT_ADDR"], mount, self.kv_version),
                {("ns", "vault-token", "token"): env["VAULT_TOKEN"].encode()},
            )

        return make

    @pytest.fixture
    async def bad_auth_backend(self, sandbox: Any, mount: str) -> AsyncIterator[Backend]:
        b = await build_vault(
            token_store(sandbox.env["VAULT_ADDR"], mount, self.kv_version),
            {("ns", "vault-token", "token"): b"s.not-a-real-token"},
        )
        yield b
        await b.close()

    @pytest.fixture
    async def unreachable_backend(self, mount: str) -> AsyncIterator[Backend]:
        b = await build_vault(
            token_store(f"http://127.0.0.1:{free_port()}", mount, self.kv_version),
            {("ns", "vault-token", "token"): b"root"},
        )
        yield b
        await b.close()

    @pytest.fixture
    def write(self, admin: hvac.Client, mount: str) -> Callable[[str, str], str | None]:
        def put(name: str, value: str) -> str | None:
            data = json.loads(value)
            if self.kv_version == "v1":
                admin.secrets.kv.v1.create_or_update_secret(name, data, mount_point=mount)
                return None
            resp = admin.secrets.kv.v2.create_or_update_secret(name, data, mount_point=mount)
            return str(resp["data"]["version"])

        return put

    @pytest.fixture
    def rotate(self, write: Callable[[str, str], str | None]) -> Callable[[str, str], str | None]:
        return write

    @pytest.fixture
    def delete(self, admin: hvac.Client, mount: str) -> Callable[[str], None]:
        def rm(name: str) -> None:
            if self.kv_version == "v1":
                admin.secrets.kv.v1.delete_secret(name, mount_point=mount)
            else:
                admin.secrets.kv.v2.delete_metadata_and_all_versions(name, mount_point=mount)

        return rm


class TestVaultKV2Conformance(_VaultBase):
    supports_find_by_tags = True

    @pytest.fixture
    def write_tagged(
        self, admin: hvac.Client, mount: str, write: Callable[[str, str], str | None]
    ) -> Callable[..., str | None]:
        def put(name: str, value: str, tags: dict[str, str]) -> str | None:
            version = write(name, value)
            admin.secrets.kv.v2.update_metadata(name, custom_metadata=tags, mount_point=mount)
            return version

        return put


class TestVaultKV1Conformance(_VaultBase):
    kv_version = "v1"
    supports_versions = False

    @pytest.fixture
    def mount(self, admin: hvac.Client) -> Iterator[str]:
        m = f"kv1-{uuid.uuid4().hex[:8]}"
        admin.sys.enable_secrets_engine("kv", path=m, options={"version": "1"})
        yield m
        admin.sys.disable_secrets_engine(m)


# --- AppRole: login once, reuse, renew, log in again only near the max TTL ------------------


@pytest.fixture
def approle(admin: hvac.Client, vault_mount: str) -> Iterator[tuple[str, str, str]]:
    path = f"approle-{uuid.uuid4().hex[:6]}"
    admin.sys.enable_auth_method("approle", path=path)
    policy = f"read-{vault_mount}"
    admin.sys.create_or_update_policy(
        policy, f'path "{vault_mount}/*" {{ capabilities = ["read", "list"] }}'
    )
    admin.auth.approle.create_or_update_approle(
        "app", token_policies=[policy], token_ttl="6s", token_max_ttl="60s", mount_point=path
    )
    role_id = admin.auth.approle.read_role_id("app", mount_point=path)["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("app", mount_point=path)["data"]["secret_id"]
    yield path, role_id, secret_id
    admin.sys.disable_auth_method(path)


async def test_approle_token_reused_and_renewed(
    sandbox: Any, admin: hvac.Client, vault_mount: str, approle: tuple[str, str, str]
) -> None:
    path, role_id, secret_id = approle
    admin.secrets.kv.v2.create_or_update_secret(
        "app/db", {"password": SENTINEL}, mount_point=vault_mount
    )
    provider = approle_store(sandbox.env["VAULT_ADDR"], vault_mount, path, role_id)
    b = await build_vault(provider, {("ns", "ar", "secret-id"): secret_id.encode()})
    assert isinstance(b, VaultBackend)
    try:
        for _ in range(20):
            assert await b.get(RemoteRef("app/db", property="password")) == SENTINEL.encode()
        assert (b.logins, b.renewals) == (1, 0), "one login serves many reads"
        # past 2/3 of the 6 s TTL: the next read renews the token instead of logging in
        await asyncio.sleep(4.5)
        assert await b.get(RemoteRef("app/db", property="password")) == SENTINEL.encode()
        assert (b.logins, b.renewals) == (1, 1)
    finally:
        await b.close()


async def test_revoked_token_logs_in_again(
    sandbox: Any,
    admin: hvac.Client,
    vault_mount: str,
    approle: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from secretsync.backends.vault import backend as vault_backend

    monkeypatch.setattr(vault_backend, "RELOGIN_MIN_INTERVAL", 0.0)
    path, role_id, secret_id = approle
    admin.secrets.kv.v2.create_or_update_secret("x", {"a": "1"}, mount_point=vault_mount)
    provider = approle_store(sandbox.env["VAULT_ADDR"], vault_mount, path, role_id)
    b = await build_vault(provider, {("ns", "ar", "secret-id"): secret_id.encode()})
    assert isinstance(b, VaultBackend)
    try:
        assert await b.get(RemoteRef("x", property="a")) == b"1"
        admin.auth.token.revoke(b._token)
        assert await b.get(RemoteRef("x", property="a")) == b"1"
        assert b.logins == 2
    finally:
        await b.close()


async def test_approle_bad_secret_id_is_auth_error(
    sandbox: Any, approle: tuple[str, str, str], vault_mount: str
) -> None:
    path, role_id, _ = approle
    provider = approle_store(sandbox.env["VAULT_ADDR"], vault_mount, path, role_id)
    b = await build_vault(provider, {("ns", "ar", "secret-id"): SENTINEL.encode()})
    try:
        with pytest.raises(BackendAuthError) as info:
            await b.validate()
        assert_no_leak(info.value)
    finally:
        await b.close()


async def test_policy_denied_path_is_auth_error(
    sandbox: Any, admin: hvac.Client, vault_mount: str, approle: tuple[str, str, str]
) -> None:
    path, role_id, secret_id = approle
    other = f"other-{uuid.uuid4().hex[:6]}"
    admin.sys.enable_secrets_engine("kv", path=other, options={"version": "2"})
    try:
        admin.secrets.kv.v2.create_or_update_secret("x", {"a": SENTINEL}, mount_point=other)
        provider = approle_store(sandbox.env["VAULT_ADDR"], other, path, role_id)
        b = await build_vault(provider, {("ns", "ar", "secret-id"): secret_id.encode()})
        try:
            with pytest.raises(BackendAuthError) as info:
                await b.get(RemoteRef("x"))
            assert "x" in str(info.value)
            assert_no_leak(info.value)
            # a denied path does not turn into a login storm
            with pytest.raises(BackendAuthError):
                await b.get(RemoteRef("x"))
            assert isinstance(b, VaultBackend) and b.logins == 1
        finally:
            await b.close()
    finally:
        admin.sys.disable_secrets_engine(other)


async def test_mount_in_key_when_path_unset(
    sandbox: Any, admin: hvac.Client, vault_mount: str
) -> None:
    admin.secrets.kv.v2.create_or_update_secret("k", {"a": "1"}, mount_point=vault_mount)
    provider = token_store(sandbox.env["VAULT_ADDR"], vault_mount)
    del provider["path"]
    b = await build_vault(
        provider, {("ns", "vault-token", "token"): sandbox.env["VAULT_TOKEN"].encode()}
    )
    try:
        assert await b.get(RemoteRef(f"{vault_mount}/k", property="a")) == b"1"
    finally:
        await b.close()


async def test_namespace_header_is_sent(sandbox: Any, admin: hvac.Client, vault_mount: str) -> None:
    """OpenBao supports namespaces: a store in namespace ``ns1`` reads ``ns1``'s mounts."""
    ns = f"ns{uuid.uuid4().hex[:6]}"
    admin.sys.create_namespace(ns)
    try:
        nsc = hvac.Client(
            url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"], namespace=ns
        )
        nsc.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
        nsc.secrets.kv.v2.create_or_update_secret("in-ns", {"a": "ns-value"}, mount_point="kv")
        provider = token_store(sandbox.env["VAULT_ADDR"], "kv") | {"namespace": ns}
        b = await build_vault(
            provider, {("ns", "vault-token", "token"): sandbox.env["VAULT_TOKEN"].encode()}
        )
        try:
            assert await b.get(RemoteRef("in-ns", property="a")) == b"ns-value"
        finally:
            await b.close()
    finally:
        admin.sys.delete_namespace(ns)


@pytest.mark.parametrize(
    ("provider", "needle"),
    [
        ({"server": "vault:8200", "auth": {"tokenSecretRef": {"name": "a", "key": "b"}}}, "server"),
        (
            {
                "server": "http://v",
                "version": "v3",
                "auth": {"tokenSecretRef": {"name": "a", "key": "b"}},
            },
            "version",
        ),
        ({"server": "http://v"}, "auth"),
        (
            {
                "server": "http://v",
                "auth": {"tokenSecretRef": {"name": "a", "key": "b"}, "appRole": {"roleId": "r"}},
            },
            "exactly one",
        ),
        ({"server": "http://v", "auth": {"kubernetes": {"role": "r"}}}, "serviceAccountRef"),
        (
            {"server": "http://v", "auth": {"kubernetes": {"role": "r", "secretRef": {}}}},
            "serviceAccountRef or secretRef",
        ),
        ({"server": "http://v", "auth": {"jwt": {"role": "r"}}}, "auth.jwt needs secretRef"),
        (
            {"server": "http://v", "auth": {"jwt": {"secretRef": {"name": "j"}}}},
            "auth.jwt.secretRef: needs name and key",
        ),
        (
            {
                "server": "http://v",
                "auth": {"jwt": {"kubernetesServiceAccountToken": {"serviceAccountRef": {}}}},
            },
            "kubernetesServiceAccountToken.serviceAccountRef.name is required",
        ),
        (
            {
                "server": "http://v",
                "auth": {
                    "jwt": {
                        "kubernetesServiceAccountToken": {
                            "serviceAccountRef": {"name": "sa"},
                            "expirationSeconds": 60,
                        }
                    }
                },
            },
            "expirationSeconds must be an integer of at least 600",
        ),
        (
            {
                "server": "http://v",
                "caBundle": "%%%",
                "auth": {"tokenSecretRef": {"name": "a", "key": "b"}},
            },
            "caBundle",
        ),
    ],
)
async def test_bad_store_spec_is_store_invalid(provider: dict[str, Any], needle: str) -> None:
    with pytest.raises(StoreInvalid) as info:
        await build_vault(provider, {})
    assert needle in str(info.value)
    assert "SecretStore/test" in str(info.value)


async def test_tls_with_wrong_ca_is_unavailable(vault_mount: str) -> None:
    """An https server that does not present a cert from caBundle -> clear TLS error."""
    import base64
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    provider = token_store(f"https://127.0.0.1:{free_port()}", vault_mount) | {
        "caBundle": base64.b64encode(pem).decode()
    }
    b = await build_vault(provider, {("ns", "vault-token", "token"): b"root"})
    try:
        with pytest.raises(BackendUnavailable):
            await b.validate()
    finally:
        await b.close()


@pytest.fixture
def tls_bao(tmp_path: Any) -> Iterator[tuple[str, Any]]:
    """A private OpenBao dev server speaking TLS with its own CA: (address, CA file)."""
    import subprocess
    import time as _time
    from pathlib import Path

    bao = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "bao"
    port = free_port()
    certs = tmp_path / "certs"
    certs.mkdir()
    log = open(tmp_path / "bao.log", "wb")
    proc = subprocess.Popen(
        [
            str(bao),
            "server",
            "-dev",
            "-dev-tls",
            f"-dev-tls-cert-dir={certs}",
            "-dev-root-token-id=root",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ca = certs / "vault-ca.pem"
        deadline = _time.monotonic() + 30
        while _time.monotonic() < deadline:
            with socket.socket() as probe:
                listening = probe.connect_ex(("127.0.0.1", port)) == 0
            if listening and ca.exists() and ca.stat().st_size:
                break
            if proc.poll() is not None:
                pytest.fail(f"OpenBao (TLS) exited: {(tmp_path / 'bao.log').read_text()[-1000:]}")
            _time.sleep(0.1)
        else:
            pytest.fail("OpenBao (TLS) did not start")
        yield f"https://127.0.0.1:{port}", ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


async def test_ca_bundle_is_used_for_tls(tls_bao: tuple[str, Any]) -> None:
    import base64

    addr, ca_file = tls_bao
    ca_pem = ca_file.read_bytes()
    admin = hvac.Client(url=addr, token="root", verify=str(ca_file))
    admin.secrets.kv.v2.create_or_update_secret("tls", {"a": "over-tls"}, mount_point="secret")
    good = await build_vault(
        token_store(addr, "secret") | {"caBundle": base64.b64encode(ca_pem).decode()},
        {("ns", "vault-token", "token"): b"root"},
    )
    without = await build_vault(
        token_store(addr, "secret"), {("ns", "vault-token", "token"): b"root"}
    )
    try:
        assert await good.get(RemoteRef("tls", property="a")) == b"over-tls"
        with pytest.raises(BackendUnavailable) as info:
            await without.validate()
        assert "TLS" in str(info.value)
    finally:
        await good.close()
        await without.close()
