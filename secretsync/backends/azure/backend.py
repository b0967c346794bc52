"""The Azure Key Vault backend itself, on the SDK's native async client.

Why this module exists: it is the SDK boundary. It turns an ``external-secrets.io/v1``-shaped
``azurekv`` provider block into one ``azure.keyvault.secrets.aio.SecretClient`` and one
``azure.identity.aio`` credential per store (reused; both closed on cleanup) and translates
every Azure error into the contract's ``SecretNotFound`` / ``BackendAuthError`` /
``BackendUnavailable`` with a message naming the secret and the HTTP status / error code,
never the value or the body.

Store fields::

    azurekv:
      vaultUrl: https://my-vault.vault.azure.net      # required
      tenantId, authType, authSecretRef, identityId,  # the credential: see ``credentials``
      environmentType, customCloudConfig              #   (auth methods, Entra ID authority)
      caBundle: <base64 PEM>                          # our addition: private CA for the vault
                                                      #   and the authority (sandbox, proxies)

The API version is pinned to 7.6 (served by every current Key Vault and by the sandbox).
Challenge-resource verification stays on for real vault hosts (``*.vault.azure.net`` ...) and
is off for custom hosts, whose challenge cannot name them. Versions: none = the current
version; otherwise a version id. A disabled secret (or version) is a ``SecretNotFound`` that
says so. ``find.path`` is a name prefix (names have no hierarchy), ``find.tags`` are tags.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets.aio import SecretClient

from secretsync.backends._common import (
    ca_bundle,
    cap_loggers,
    compile_regexp,
    opt_str,
    req_str,
    store_label,
    tags_match,
)
from secretsync.backends.azure import credentials
from secretsync.backends.base import Backend, FindQuery, RemoteRef, StoreContext, json_map
from secretsync.backends.base import select_property as _select_property
from secretsync.backends.metrics import track
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    StoreInvalid,
)

API_VERSION = "7.6"

# azure-core logs request/response details at INFO/DEBUG, and azure-identity logs Entra ID
# error bodies at WARNING; our translated errors carry what an operator needs instead.
cap_loggers({"azure": logging.WARNING, "azure.identity": logging.ERROR})

VAULT_SUFFIXES = (
    ".vault.azure.net",
    ".vault.usgovcloudapi.net",
    ".vault.azure.cn",
    ".vault.microsoftazure.de",
    ".managedhsm.azure.net",
)
_FIND_CONCURRENCY = 8
_DISABLED_CODES = frozenset({"SecretDisabled", "ForbiddenByDisabled"})
_TRANSPORT = {
    "retry_total": 3,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 8,
    "connection_timeout": 5,
    "read_timeout": 15,
}


def _error_codes(exc: HttpResponseError) -> set[str]:
    """The ``code`` and nested ``innererror.code`` values of an error body (codes only)."""
    codes: set[str] = set()
    err: Any = getattr(exc, "error", None)
    if err is not None:
        if getattr(err, "code", None):
            codes.add(str(err.code))
        inner: Any = getattr(err, "innererror", None)
        while isinstance(inner, Mapping) and inner.get("code"):
            codes.add(str(inner["code"]))
            inner = inner.get("innererror")
    return codes


def _tls_failure(exc: BaseException) -> bool:
    """True when a transport error was caused by certificate verification."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        if isinstance(cur, ssl.SSLCertVerificationError):
            return True
        inner = getattr(cur, "inner_exception", None)
        cur = inner if isinstance(inner, BaseException) else (cur.__cause__ or cur.__context__)
    return False


def translate(exc: BaseException, what: str) -> BackendError:
    """Map an azure-core / azure-identity exception to the contract's error types. The
    message carries the status and error codes, never the body's message."""
    if isinstance(exc, ResourceNotFoundError):
        return SecretNotFound(f"{what}: not found in Azure Key Vault (404)")
    if isinstance(exc, ClientAuthenticationError):
        kind = type(exc).__name__
        return BackendAuthError(
            f"{what}: Azure authentication failed ({kind}); check tenantId, the client "
            "credentials or the pod's managed / workload identity"
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        if _tls_failure(exc):
            return BackendUnavailable(
                f"{what}: TLS verification of the Azure endpoint failed; for a private CA set "
                "spec.provider.azurekv.caBundle"
            )
        return BackendUnavailable(f"{what}: cannot reach Azure ({type(exc).__name__}); will retry")
    if isinstance(exc, HttpResponseError):
        status = int(exc.status_code or 0)
        codes = _error_codes(exc)
        code_text = "/".join(sorted(codes)) or "no code"
        if status == 403 and codes & _DISABLED_CODES:
            return SecretNotFound(f"{what}: the secret is disabled in Azure Key Vault; enable it")
        if status in (401, 403):
            return BackendAuthError(
                f"{what}: Azure Key Vault refused access ({status} {code_text}); grant the "
                "identity 'get'/'list' on secrets (access policy or Key Vault Secrets User)"
            )
        if status == 429 or status >= 500:
            return BackendUnavailable(
                f"{what}: Azure Key Vault is throttling or unavailable ({status}); will retry"
            )
        return BackendError(f"{what}: Azure Key Vault rejected the request ({status} {code_text})")
    if isinstance(exc, AzureError):
        return BackendError(f"{what}: Azure call failed ({type(exc).__name__})")
    return BackendError(f"{what}: Azure call failed ({type(exc).__name__})")


def secret_name(key: str) -> str:
    """Key Vault object references may be written ``secret/<name>``; only secrets are read."""
    kind, sep, rest = key.partition("/")
    if sep and kind == "secret":
        return rest
    if sep and kind in ("cert", "key"):
        raise SecretNotFound(f"Azure Key Vault {kind}s are not supported; reference a secret")
    return key


def challenge_check(vault_url: str) -> bool:
    """Verify the challenge resource for real vault hosts only (see module docstring)."""
    host = (urlsplit(vault_url).hostname or "").lower()
    return host.endswith(VAULT_SUFFIXES)


class AzureBackend:
    """A connected store: one vault's secrets."""

    def __init__(self, client: Any, credential: Any, label: str, ca_file: str | None) -> None:
        self._client = client
        self._credential = credential
        self._label = label
        self._ca_file = ca_file
        self._closed = False

    def _what(self, key: str, version: str | None = None) -> str:
        return f"Azure Key Vault secret {key!r}" + (f" version {version!r}" if version else "")

    async def validate(self) -> None:
        """List one secret's properties: proves reachability, the credential and the
        'list' permission without reading a value."""
        with track("azurekv", "validate"):
            try:
                pages = self._client.list_properties_of_secrets(max_page_size=1).by_page()
                async for page in pages:
                    async for _ in page:
                        break
                    break
            except AzureError as exc:
                raise translate(exc, self._label) from exc

    async def _read(self, key: str, version: str | None) -> bytes:
        what = self._what(key, version)
        with track("azurekv", "get"):
            name = secret_name(key)
            try:
                secret = await self._client.get_secret(name, version or None)
            except AzureError as exc:
                raise translate(exc, what) from exc
        if secret.properties.enabled is False:
            raise SecretNotFound(f"{what}: the secret is disabled in Azure Key Vault; enable it")
        if secret.value is None:
            raise SecretNotFound(f"{what}: the secret has no value")
        return str(secret.value).encode()

    async def get(self, ref: RemoteRef) -> bytes:
        raw = await self._read(ref.key, ref.version)
        if ref.property:
            return _select_property(raw, ref.property, what=self._what(ref.key, ref.version))
        return raw

    async def get_map(self, ref: RemoteRef) -> dict[str, bytes]:
        return json_map(await self.get(ref), what=self._what(ref.key, ref.version))

    async def find(self, query: FindQuery) -> dict[str, bytes]:
        pattern = compile_regexp(query.name_regexp, what=self._label)
        tags = dict(query.tags)
        names: list[str] = []
        with track("azurekv", "find"):
            try:
                async for props in self._client.list_properties_of_secrets():
                    name = str(props.name)
                    if props.enabled is False:
                        continue
                    if query.path and not name.startswith(query.path):
                        continue
                    if pattern is not None and not pattern.search(name):
                        continue
                    if not tags_match(dict(props.tags or {}), tags):
                        continue
                    names.append(name)
            except AzureError as exc:
                raise translate(exc, self._label) from exc
        limit = asyncio.Semaphore(_FIND_CONCURRENCY)

        async def one(name: str) -> tuple[str, bytes | None]:
            async with limit:
                try:
                    return name, await self._read(name, None)
                except SecretNotFound:
                    return name, None  # deleted or disabled since the listing

        results = await asyncio.gather(*(one(n) for n in names))
        return {name: value for name, value in results if value is not None}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._client.close()
            await self._credential.close()
        finally:
            if self._ca_file:
                os.unlink(self._ca_file)


_VAULT_URL = re.compile(r"^https://[^/\s]+/?$")


async def create(ctx: StoreContext) -> Backend:
    """Entry point ``azurekv``: parse the store, build the credential and the client."""
    p = ctx.provider
    base = "spec.provider.azurekv"
    label = store_label(ctx)
    vault_url = req_str(ctx, p, "vaultUrl", f"{base}.vaultUrl")
    if not _VAULT_URL.match(vault_url):
        raise StoreInvalid(f"{label}: {base}.vaultUrl must be https://<host>[:port]")
    authority = credentials.authority_for(ctx)
    common: dict[str, Any] = dict(_TRANSPORT)
    ca_file: str | None = None
    ca = opt_str(ctx, p, "caBundle", f"{base}.caBundle")
    if ca:
        pem = ca_bundle(ca, "spec.provider.azurekv.caBundle", label)
        fd, ca_file = tempfile.mkstemp(prefix="secretsync-azure-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        common["connection_verify"] = ca_file
    try:
        credential = await credentials.credential(ctx, common, authority)
    except BaseException:
        if ca_file:
            os.unlink(ca_file)
        raise
    client = SecretClient(
        vault_url,
        credential,
        api_version=API_VERSION,
        verify_challenge_resource=challenge_check(vault_url),
        **common,
    )
    return AzureBackend(client, credential, label, ca_file)
