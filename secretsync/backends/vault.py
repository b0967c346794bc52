"""HashiCorp Vault / OpenBao backend (KV v1 and v2) over hvac.

hvac is synchronous, so every call runs in a worker thread (``asyncio.to_thread``). The
client is built once per store and keeps its Vault token: a token obtained by a login
(AppRole, Kubernetes) is reused and renewed (``renew-self``) until its TTL runs low, and only
then does the backend log in again — never a login per refresh. A 401/403 with a token that
may have been revoked triggers at most one re-login per ``RELOGIN_MIN_INTERVAL``.

Spec (``spec.provider.vault``, external-secrets.io/v1 field names)::

    server: https://vault:8200        path: secret (the KV mount)     version: v2 | v1
    namespace: team-a                  caBundle: <base64 PEM>
    auth:
      tokenSecretRef: {name, key, namespace}
      appRole: {path: approle, roleId, secretRef: {name, key, namespace}}
      kubernetes: {mountPath: kubernetes, role, serviceAccountRef: {name, audiences}}

Every hvac / requests exception is translated here: 404 -> SecretNotFound, 401/403 ->
BackendAuthError, connection errors / 5xx / sealed -> BackendUnavailable. Messages name the
store and the path, never a value or a response body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hvac_exc
import requests

from secretsync.backends.base import (
    Backend,
    FindQuery,
    RemoteRef,
    StoreContext,
    json_map,
    select_property,
)
from secretsync.backends.metrics import track
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    StoreInvalid,
)

NAME = "vault"
DEFAULT_TIMEOUT = 10.0
# Renew (or log in again) once less than this fraction of the token's TTL is left.
RENEW_FRACTION = 1 / 3
RELOGIN_MIN_INTERVAL = 30.0
# Walking a large tree for dataFrom.find is bounded so a typo cannot list all of Vault.
MAX_FIND_RESULTS = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str
    namespace: str | None = None


@dataclass(frozen=True)
class VaultConfig:
    """The parsed, validated provider block."""

    server: str
    mount: str | None
    kv_version: int
    namespace: str | None
    ca_pem: bytes | None
    auth_kind: str  # token | appRole | kubernetes
    token_ref: SecretRef | None = None
    approle_path: str = "approle"
    role_id: str | None = None
    role_id_ref: SecretRef | None = None
    secret_id_ref: SecretRef | None = None
    k8s_mount: str = "kubernetes"
    k8s_role: str | None = None
    sa_name: str | None = None
    sa_namespace: str | None = None
    sa_audiences: tuple[str, ...] = field(default_factory=tuple)
    timeout: float = DEFAULT_TIMEOUT


def _ref(block: Any, what: str) -> SecretRef:
    if not isinstance(block, Mapping) or not block.get("name") or not block.get("key"):
        raise StoreInvalid(f"{what}: needs name and key")
    ns = block.get("namespace")
    return SecretRef(str(block["name"]), str(block["key"]), str(ns) if ns else None)


def parse_config(provider: Mapping[str, Any], *, what: str) -> VaultConfig:
    """Validate ``spec.provider.vault`` (pure). Raises StoreInvalid naming the bad field."""
    server = provider.get("server")
    if not isinstance(server, str) or not re.match(r"^https?://", server):
        raise StoreInvalid(f"{what}: spec.provider.vault.server must be an http(s) URL")
    version = str(provider.get("version") or "v2")
    if version not in ("v1", "v2"):
        raise StoreInvalid(f"{what}: spec.provider.vault.version must be v1 or v2")
    mount = provider.get("path")
    mount = str(mount).strip("/") if mount else None
    ca_pem: bytes | None = None
    if provider.get("caBundle"):
        try:
            ca_pem = base64.b64decode(str(provider["caBundle"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise StoreInvalid(f"{what}: spec.provider.vault.caBundle is not base64") from exc
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise StoreInvalid(f"{what}: spec.provider.vault.caBundle holds no PEM certificate")
    auth = provider.get("auth")
    if not isinstance(auth, Mapping):
        raise StoreInvalid(f"{what}: spec.provider.vault.auth is required")
    kinds = [k for k in ("tokenSecretRef", "appRole", "kubernetes") if auth.get(k)]
    if len(kinds) != 1:
        raise StoreInvalid(
            f"{what}: spec.provider.vault.auth needs exactly one of tokenSecretRef, appRole, "
            f"kubernetes (got {kinds or 'none'})"
        )
    base: dict[str, Any] = {
        "server": server.rstrip("/"),
        "mount": mount,
        "kv_version": 2 if version == "v2" else 1,
        "namespace": str(provider["namespace"]) if provider.get("namespace") else None,
        "ca_pem": ca_pem,
        "auth_kind": kinds[0],
    }
    kind = kinds[0]
    prefix = f"{what}: spec.provider.vault.auth.{kind}"
    if kind == "tokenSecretRef":
        return VaultConfig(**base, token_ref=_ref(auth[kind], prefix))
    if kind == "appRole":
        ar = auth[kind]
        if not ar.get("secretRef"):
            raise StoreInvalid(f"{prefix}.secretRef is required")
        if not ar.get("roleId") and not ar.get("roleRef"):
            raise StoreInvalid(f"{prefix} needs roleId or roleRef")
        return VaultConfig(
            **base,
            approle_path=str(ar.get("path") or "approle").strip("/"),
            role_id=str(ar["roleId"]) if ar.get("roleId") else None,
            role_id_ref=_ref(ar["roleRef"], f"{prefix}.roleRef") if ar.get("roleRef") else None,
            secret_id_ref=_ref(ar["secretRef"], f"{prefix}.secretRef"),
        )
    k8s = auth[kind]
    sa = k8s.get("serviceAccountRef")
    if not k8s.get("role"):
        raise StoreInvalid(f"{prefix}.role is required")
    if not isinstance(sa, Mapping) or not sa.get("name"):
        raise StoreInvalid(f"{prefix}.serviceAccountRef.name is required")
    return VaultConfig(
        **base,
        k8s_mount=str(k8s.get("mountPath") or "kubernetes").strip("/"),
        k8s_role=str(k8s["role"]),
        sa_name=str(sa["name"]),
        sa_namespace=str(sa["namespace"]) if sa.get("namespace") else None,
        sa_audiences=tuple(str(a) for a in (sa.get("audiences") or [])),
    )


def _translate(exc: Exception, what: str, op: str = "") -> BackendError:
    """hvac/requests exception -> our typed error; the text names ``what``, never a body."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, hvac_exc.InvalidPath):
        return SecretNotFound(f"{what}: not found")
    if isinstance(exc, hvac_exc.Forbidden | hvac_exc.Unauthorized):
        return BackendAuthError(f"{what}: permission denied by Vault (token invalid or policy)")
    if isinstance(exc, hvac_exc.VaultDown | hvac_exc.VaultNotInitialized):
        return BackendUnavailable(f"{what}: Vault is sealed or not initialised")
    if isinstance(exc, hvac_exc.RateLimitExceeded):
        return BackendUnavailable(f"{what}: Vault rate limit exceeded")
    if isinstance(exc, hvac_exc.InternalServerError | hvac_exc.BadGateway):
        return BackendUnavailable(f"{what}: Vault server error ({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.SSLError):
        return BackendUnavailable(f"{what}: TLS error talking to Vault (check caBundle)")
    if isinstance(exc, requests.exceptions.Timeout):
        return BackendUnavailable(f"{what}: Vault timed out")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return BackendUnavailable(f"{what}: cannot connect to Vault")
    if isinstance(exc, hvac_exc.InvalidRequest) and op == "login":
        # Vault answers a bad role id / secret id / JWT with 400, not 401/403.
        return BackendAuthError(f"{what}: Vault rejected the login credentials")
    if isinstance(exc, hvac_exc.InvalidRequest):
        return BackendError(
            f"{what}: Vault rejected the request (InvalidRequest)", reason="BackendRequestInvalid"
        )
    if isinstance(exc, hvac_exc.VaultError | requests.exceptions.RequestException):
        return BackendError(f"{what}: Vault error ({type(exc).__name__})")
    raise exc


class VaultBackend:
    """One store's Vault client. Thread-safe: hvac calls run concurrently in worker threads."""

    def __init__(self, ctx: StoreContext, cfg: VaultConfig) -> None:
        self._ctx = ctx
        self._cfg = cfg
        self._what = f"{ctx.store_kind}/{ctx.store_name}"
        self._ca_file: str | None = None
        verify: bool | str = True
        if cfg.ca_pem:
            fd, self._ca_file = tempfile.mkstemp(prefix="secretsync-vault-ca-", suffix=".pem")
            with os.fdopen(fd, "wb") as fh:
                fh.write(cfg.ca_pem)
            verify = self._ca_file
        self._client = hvac.Client(
            url=cfg.server, namespace=cfg.namespace, verify=verify, timeout=cfg.timeout
        )
        self._token: str | None = None
        self._token_obtained = 0.0
        self._token_ttl = 0.0  # 0 = does not expire (or unknown, e.g. a static token)
        self._token_renewable = False
        self._last_login = -RELOGIN_MIN_INTERVAL
        self._auth_lock = asyncio.Lock()
        self._closed = False
        self.logins = 0  # observable by tests and the benchmark
        self.renewals = 0

    # --- token lifecycle -------------------------------------------------------------------
    async def _login(self) -> None:
        cfg = self._cfg
        ns = self._ctx.namespace
        self._last_login = time.monotonic()
        if cfg.auth_kind == "tokenSecretRef":
            assert cfg.token_ref is not None
            ref = cfg.token_ref
            raw = await self._ctx.resolve_secret(ref.namespace or ns, ref.name, ref.key)
            token = raw.decode().strip()
            self._set_token(token, ttl=0.0, renewable=False)
            return
        if cfg.auth_kind == "appRole":
            assert cfg.secret_id_ref is not None
            sref = cfg.secret_id_ref
            secret_id = await self._ctx.resolve_secret(sref.namespace or ns, sref.name, sref.key)
            role_id = cfg.role_id
            if role_id is None:
                assert cfg.role_id_ref is not None
                rref = cfg.role_id_ref
                role_id = (
                    (await self._ctx.resolve_secret(rref.namespace or ns, rref.name, rref.key))
                    .decode()
                    .strip()
                )
            sid = secret_id.decode().strip()
            resp = await self._run(
                "login",
                f"{self._what}: AppRole login",
                lambda c: c.auth.approle.login(
                    role_id=role_id, secret_id=sid, mount_point=cfg.approle_path, use_token=False
                ),
                authenticated=False,
            )
        else:
            if self._ctx.request_token is None:
                raise StoreInvalid(f"{self._what}: Kubernetes auth needs service-account tokens")
            assert cfg.sa_name is not None and cfg.k8s_role is not None
            jwt = await self._ctx.request_token(
                cfg.sa_namespace or ns, cfg.sa_name, list(cfg.sa_audiences)
            )
            role = cfg.k8s_role
            resp = await self._run(
                "login",
                f"{self._what}: Kubernetes login as role {role!r}",
                lambda c: c.auth.kubernetes.login(
                    role=role, jwt=jwt, mount_point=cfg.k8s_mount, use_token=False
                ),
                authenticated=False,
            )
        auth = resp.get("auth") if isinstance(resp, Mapping) else None
        if not isinstance(auth, Mapping) or not auth.get("client_token"):
            raise BackendAuthError(f"{self._what}: Vault login returned no token")
        self._set_token(
            str(auth["client_token"]),
            ttl=float(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
        )
        self.logins += 1

    def _set_token(self, token: str, *, ttl: float, renewable: bool) -> None:
        self._token = token
        self._client.token = token
        self._token_obtained = time.monotonic()
        self._token_ttl = ttl
        self._token_renewable = renewable

    def _token_needs_refresh(self) -> bool:
        if self._token is None:
            return True
        if self._token_ttl <= 0:
            return False
        left = self._token_ttl - (time.monotonic() - self._token_obtained)
        return left < self._token_ttl * RENEW_FRACTION

    async def _ensure_token(self) -> None:
        if not self._token_needs_refresh():
            return
        async with self._auth_lock:
            if not self._token_needs_refresh():
                return
            if self._token is not None and self._token_renewable:
                try:
                    resp = await self._run(
                        "renew",
                        f"{self._what}: token renewal",
                        lambda c: c.auth.token.renew_self(),
                        authenticated=False,
                    )
                    auth = resp.get("auth") if isinstance(resp, Mapping) else None
                    ttl = float(auth.get("lease_duration") or 0) if isinstance(auth, Mapping) else 0
                    # Renewal near the max TTL returns a short lease: log in again instead.
                    if ttl >= self._token_ttl * RENEW_FRACTION and ttl > 5:
                        self._token_obtained = time.monotonic()
                        self.renewals += 1
                        return
                except BackendAuthError:
                    pass
            await self._login()

    async def _on_auth_error(self) -> bool:
        """A call was denied. If our token may be stale (revoked, server restarted, Secret
        rotated), drop it and log in again — at most once per RELOGIN_MIN_INTERVAL."""
        async with self._auth_lock:
            if time.monotonic() - self._last_login < RELOGIN_MIN_INTERVAL:
                return False
            if self._token is not None:
                try:  # a valid token means the policy denied this path: no login helps
                    await self._run("validate", f"{self._what}: token lookup",
                                    lambda c: c.auth.token.lookup_self(), authenticated=False)
                    return False
                except BackendAuthError:
                    pass
            self._token = None
            await self._login()
            return True

    # --- running hvac calls ------------------------------------------------------------------
    async def _run(
        self, op: str, what: str, fn: Callable[[hvac.Client], T], *, authenticated: bool = True
    ) -> T:
        if self._closed:
            raise BackendUnavailable(f"{self._what}: backend client is closed")
        if authenticated:
            await self._ensure_token()

        def call() -> T:
            with track(NAME, op):
                try:
                    return fn(self._client)
                except Exception as exc:  # translated; unknown types re-raised by _translate
                    raise _translate(exc, what, op) from exc

        try:
            return await asyncio.to_thread(call)
        except BackendAuthError:
            if authenticated and await self._on_auth_error():
                return await asyncio.to_thread(call)
            raise

    def _split(self, key: str) -> tuple[str, str]:
        """(mount, path inside the mount). Without ``spec.path`` the key's first segment is
        the mount."""
        key = key.strip("/")
        if self._cfg.mount:
            return self._cfg.mount, key
        mount, _, rest = key.partition("/")
        if not rest:
            raise StoreInvalid(
                f"{self._what}: key {key!r} needs a mount (set spec.provider.vault.path)"
            )
        return mount, rest

    async def _read(self, ref: RemoteRef) -> dict[str, Any]:
        mount, path = self._split(ref.key)
        what = f"{self._what}: secret {ref.key!r}"
        if self._cfg.kv_version == 1:
            if ref.version:
                raise StoreInvalid(f"{what}: KV v1 has no versions (remove remoteRef.version)")
            resp = await self._run(
                "get", what, lambda c: c.secrets.kv.v1.read_secret(path=path, mount_point=mount)
            )
            data = resp.get("data") if isinstance(resp, Mapping) else None
        else:
            version: int | None = None
            if ref.version:
                try:
                    version = int(ref.version)
                except ValueError as exc:
                    raise SecretNotFound(
                        f"{what}: version {ref.version!r} is not a number"
                    ) from exc
                what = f"{what} version {version}"
            resp = await self._run(
                "get",
                what,
                lambda c: c.secrets.kv.v2.read_secret_version(
                    path=path, version=version, mount_point=mount, raise_on_deleted_version=True
                ),
            )
            inner = resp.get("data") if isinstance(resp, Mapping) else None
            data = inner.get("data") if isinstance(inner, Mapping) else None
        if not isinstance(data, Mapping):
            raise SecretNotFound(f"{what}: not found (deleted or destroyed)")
        return dict(data)

    # --- Backend protocol ----------------------------------------------------------------------
    async def validate(self) -> None:
        await self._ensure_token()
        await self._run(
            "validate", f"{self._what}: token lookup", lambda c: c.auth.token.lookup_self()
        )

    async def get(self, ref: RemoteRef) -> bytes:
        data = await self._read(ref)
        raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        if ref.property:
            return select_property(raw, ref.property, what=f"{self._what}: secret {ref.key!r}")
        return raw

    async def get_map(self, ref: RemoteRef) -> dict[str, bytes]:
        data = await self._read(ref)
        raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        what = f"{self._what}: secret {ref.key!r}"
        if ref.property:
            raw = select_property(raw, ref.property, what=what)
        return json_map(raw, what=what)

    async def _list(self, mount: str, path: str) -> list[str]:
        what = f"{self._what}: list {mount}/{path}"
        try:
            if self._cfg.kv_version == 1:
                resp = await self._run(
                    "list",
                    what,
                    lambda c: c.secrets.kv.v1.list_secrets(path=path, mount_point=mount),
                )
            else:
                resp = await self._run(
                    "list",
                    what,
                    lambda c: c.secrets.kv.v2.list_secrets(path=path, mount_point=mount),
                )
        except SecretNotFound:
            return []
        data = resp.get("data") if isinstance(resp, Mapping) else None
        keys = data.get("keys") if isinstance(data, Mapping) else None
        return [str(k) for k in keys] if isinstance(keys, list) else []

    async def _tags_match(self, mount: str, path: str, tags: Mapping[str, str]) -> bool:
        what = f"{self._what}: metadata of {path!r}"
        resp = await self._run(
            "metadata",
            what,
            lambda c: c.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount),
        )
        data = resp.get("data") if isinstance(resp, Mapping) else None
        custom = (data.get("custom_metadata") if isinstance(data, Mapping) else None) or {}
        return all(custom.get(k) == v for k, v in tags.items())

    async def find(self, query: FindQuery) -> dict[str, bytes]:
        if query.tags and self._cfg.kv_version == 1:
            raise StoreInvalid(f"{self._what}: find by tags needs KV v2 (custom_metadata)")
        pattern = re.compile(query.name_regexp) if query.name_regexp else None
        root = (query.path or "").strip("/")
        if self._cfg.mount:
            mount, start = self._cfg.mount, root
        else:
            mount, _, start = root.partition("/")
            if not mount:
                raise StoreInvalid(f"{self._what}: find needs a path starting with the mount")
        prefix = "" if self._cfg.mount else f"{mount}/"
        names: list[str] = []
        # A path may name a folder or be a prefix of names; list its parent and the folder.
        stack = [start + "/" if start else ""]
        seen: set[str] = set()
        while stack:
            folder = stack.pop()
            if folder in seen:
                continue
            seen.add(folder)
            for entry in await self._list(mount, folder):
                full = folder + entry
                if entry.endswith("/"):
                    stack.append(full)
                elif pattern is None or pattern.search(full):
                    names.append(full)
                if len(names) > MAX_FIND_RESULTS:
                    raise StoreInvalid(
                        f"{self._what}: find matched more than {MAX_FIND_RESULTS} secrets"
                    )
        out: dict[str, bytes] = {}
        for name in sorted(names):
            if query.tags and not await self._tags_match(mount, name, query.tags):
                continue
            try:
                out[prefix + name] = await self.get(RemoteRef(key=prefix + name))
            except SecretNotFound:
                continue  # deleted between list and read
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        session = getattr(getattr(self._client, "adapter", None), "session", None)
        if session is not None:
            await asyncio.to_thread(session.close)
        if self._ca_file:
            try:
                os.unlink(self._ca_file)
            except OSError:
                pass


async def create(ctx: StoreContext) -> Backend:
    """Entry point ``secretsync.backends: vault``."""
    cfg = parse_config(ctx.provider, what=f"{ctx.store_kind}/{ctx.store_name}")
    return VaultBackend(ctx, cfg)
