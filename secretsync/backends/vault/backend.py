"""The Vault backend itself: one hvac client per store, its token, and the KV operations.

Why this module exists: it is the SDK boundary. hvac is synchronous, so every call runs in a
worker thread (``asyncio.to_thread``). The client is built once per store and keeps its Vault
token: a token obtained by a login (AppRole, Kubernetes, JWT) is reused and renewed (``renew-self``)
until its TTL runs low, and only then does the backend log in again — never a login per
refresh. A 401/403 with a token that may have been revoked triggers at most one re-login per
``RELOGIN_MIN_INTERVAL``. Which login happens is decided by the auth-method modules.

Every hvac / requests exception is translated here: 404 -> SecretNotFound, 401/403 ->
BackendAuthError, connection errors / 5xx / sealed -> BackendUnavailable. Messages name the
store and the path, never a value or a response body.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, assert_never

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
from secretsync.backends.vault import auth_approle, auth_jwt, auth_kubernetes, auth_token
from secretsync.backends.vault.config import (
    AppRoleAuth,
    JwtAuth,
    KubernetesAuth,
    TokenAuth,
    VaultConfig,
    parse_config,
)
from secretsync.backends.vault.login import Login
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    StoreInvalid,
)

NAME = "vault"
# Renew (or log in again) once less than this fraction of the token's TTL is left.
RENEW_FRACTION = 1 / 3
RELOGIN_MIN_INTERVAL = 30.0
# Walking a large tree for dataFrom.find is bounded so a typo cannot list all of Vault.
MAX_FIND_RESULTS = 1000

T = TypeVar("T")


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
        self._last_login = time.monotonic()
        login = await self._authenticate()
        self._set_token(login.token, ttl=login.ttl, renewable=login.renewable)
        if login.issued:
            self.logins += 1

    async def _authenticate(self) -> Login:
        """Dispatch on the auth method (the tagged union parsed once by ``config``)."""
        auth, ctx, what, call = self._cfg.auth, self._ctx, self._what, self._login_call
        match auth:
            case TokenAuth():
                return await auth_token.login(auth, ctx, what, call)
            case AppRoleAuth():
                return await auth_approle.login(auth, ctx, what, call)
            case KubernetesAuth():
                return await auth_kubernetes.login(auth, ctx, what, call)
            case JwtAuth():
                return await auth_jwt.login(auth, ctx, what, call)
            case _:
                assert_never(auth)

    async def _login_call(self, what: str, fn: Callable[[hvac.Client], Any]) -> Any:
        return await self._run("login", what, fn, authenticated=False)

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
