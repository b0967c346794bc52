"""GCP Secret Manager backend (``spec.provider.gcpsm``), on the SDK's native async client.

Why this module exists: it turns an ``external-secrets.io/v1``-shaped ``gcpsm`` provider
block into one ``SecretManagerServiceAsyncClient`` per store (a gRPC channel, reused, closed on
cleanup) and translates every Google API error into the contract's ``SecretNotFound`` /
``BackendAuthError`` / ``BackendUnavailable`` with a message naming the secret and the gRPC
status, never the value or the server's message.

Store fields::

    gcpsm:
      projectID: my-project            # required unless the key / ADC names a project
      endpoint: 127.0.0.1:9090          # our addition. "host:port" or "http://host:port" is
                                        # plaintext gRPC (emulators; anonymous, no credentials
                                        # ever sent); "https://host[:port]" is TLS
      caBundle: <base64 PEM>            # our addition: a private CA (see ``gcp_channel``)
      auth:                             # optional; none = Application Default Credentials
        secretRef:                      #   (GKE workload identity via the metadata server,
          secretAccessKeySecretRef:     #   GOOGLE_APPLICATION_CREDENTIALS, ...)
            {name, key, namespace}      # a service-account key JSON
        workloadIdentity:               # or: a ServiceAccount of the store's (``gcp_workload``)
          {serviceAccountRef, clusterLocation, clusterName, clusterProjectID}

Versions: none or ``latest`` = the newest version; a number (or ``versions/N``) = that
version; a disabled or destroyed version is a ``SecretNotFound`` that says which. ``key`` is a
secret id or a full ``projects/P/secrets/S`` name. ``find.path`` is a name prefix (secret ids
have no hierarchy), ``find.tags`` are labels.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.retry import AsyncRetry, if_exception_type
from google.auth import exceptions as auth_exc
from google.cloud.secretmanager_v1 import SecretManagerServiceAsyncClient, SecretVersion
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcAsyncIOTransport,
)

from secretsync.backends._common import (
    ca_bundle,
    cap_loggers,
    compile_regexp,
    opt_map,
    opt_str,
    resolve_ref,
    store_label,
    tags_match,
)
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

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_ENDPOINT = "secretmanager.googleapis.com:443"

# The generated client can log whole responses (payloads) at DEBUG when its logging is on;
# google-auth can log token requests and responses (workload identity exchanges) at DEBUG.
cap_loggers(
    {"google.cloud": logging.INFO, "google.api_core": logging.INFO, "google.auth": logging.INFO}
)

# Transient statuses are retried with exponential backoff and jitter for a bounded time;
# what is left becomes BackendUnavailable and the engine backs off further.
_RETRY = AsyncRetry(
    initial=0.2,
    maximum=2.0,
    multiplier=2.0,
    predicate=if_exception_type(gexc.ServiceUnavailable, gexc.ResourceExhausted),
    timeout=6.0,
)
_TIMEOUT = 15.0
_FIND_CONCURRENCY = 8
_SA_KEY_FIELDS = ("client_email", "private_key", "token_uri")


def translate(exc: BaseException, what: str) -> BackendError:
    """Map a Google API / auth exception to the contract's error types. The message carries
    the status name, never the server's text."""
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        name = type(cause).__name__ if cause is not None else "RetryError"
        return BackendUnavailable(f"{what}: GCP kept failing ({name}) until the retry deadline")
    code = type(exc).__name__
    if isinstance(exc, gexc.NotFound):
        return SecretNotFound(f"{what}: not found in GCP Secret Manager ({code})")
    if isinstance(exc, gexc.PermissionDenied | gexc.Unauthenticated | gexc.Unauthorized):
        return BackendAuthError(
            f"{what}: GCP refused access ({code}); check the store credentials and the "
            "roles/secretmanager.secretAccessor grant"
        )
    if isinstance(
        exc,
        gexc.ServiceUnavailable
        | gexc.DeadlineExceeded
        | gexc.ResourceExhausted
        | gexc.InternalServerError
        | gexc.BadGateway
        | gexc.GatewayTimeout
        | gexc.Aborted
        | gexc.Unknown,
    ):
        return BackendUnavailable(f"{what}: GCP is unavailable or throttling ({code}); will retry")
    if isinstance(exc, gexc.FailedPrecondition):
        return SecretNotFound(f"{what}: version is not accessible ({code})")
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return BackendAuthError(
            f"{what}: no Application Default Credentials found; set "
            "spec.provider.gcpsm.auth.secretRef or run with workload identity"
        )
    if isinstance(exc, auth_exc.TransportError):
        return BackendUnavailable(f"{what}: cannot reach the Google token endpoint; will retry")
    if isinstance(exc, auth_exc.RefreshError | auth_exc.OAuthError):
        # RefreshError: a refused token refresh or impersonation; OAuthError: the Security
        # Token Service refused a workload identity exchange
        return BackendAuthError(f"{what}: GCP credentials could not be refreshed ({code})")
    if isinstance(exc, gexc.GoogleAPICallError):
        return BackendError(f"{what}: GCP rejected the request ({code})")
    return BackendError(f"{what}: GCP call failed ({code})")


def version_id(version: str | None) -> str:
    """``latest`` for none; ``versions/3`` -> ``3``; anything else passed through."""
    if not version:
        return "latest"
    return version.removeprefix("versions/")


def secret_path(project: str, key: str) -> str:
    """Resource name of a secret from a store project and a key (id or full name)."""
    if key.startswith("projects/"):
        return key.split("/versions/", 1)[0]
    return f"projects/{project}/secrets/{key}"


def label_filter(tags: Mapping[str, str]) -> str:
    """A ListSecrets filter for labels (AND of ``labels.k=v``); checked again client-side."""
    return " ".join(f"labels.{k}={v}" for k, v in sorted(tags.items()))


def parse_endpoint(endpoint: str | None) -> tuple[str | None, bool]:
    """(host:port or None, plaintext?)."""
    if not endpoint:
        return None, False
    if endpoint.startswith("https://"):
        return endpoint.removeprefix("https://").rstrip("/"), False
    return endpoint.removeprefix("http://").rstrip("/"), True


def parse_sa_key(raw: bytes, *, what: str) -> dict[str, Any]:
    """The service-account key JSON, checked for the fields the SDK needs. Errors never
    quote the key."""
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreInvalid(f"{what}: the service-account key is not JSON") from exc
    if not isinstance(info, dict):
        raise StoreInvalid(f"{what}: the service-account key is not a JSON object")
    missing = [f for f in _SA_KEY_FIELDS if not info.get(f)]
    if missing:
        raise StoreInvalid(
            f"{what}: the service-account key lacks {', '.join(missing)}; "
            "use a key file created for a service account"
        )
    return info


@dataclass
class _Conn:
    client: Any
    project: str
    refresh: Callable[[], Awaitable[None]] | None = None  # ahead of each call (see gcp_channel)


async def _connect(ctx: StoreContext) -> _Conn:
    p = ctx.provider
    base = "spec.provider.gcpsm"
    label = store_label(ctx)
    project = opt_str(ctx, p, "projectID", f"{base}.projectID")
    host, plaintext = parse_endpoint(opt_str(ctx, p, "endpoint", f"{base}.endpoint"))
    auth = opt_map(ctx, p, "auth", f"{base}.auth")
    secret_ref = opt_map(ctx, auth, "secretRef", f"{base}.auth.secretRef")
    wi = opt_map(ctx, auth, "workloadIdentity", f"{base}.auth.workloadIdentity")
    if secret_ref and wi:
        raise StoreInvalid(f"{label}: {base}.auth needs one of secretRef or workloadIdentity")
    ca = opt_str(ctx, p, "caBundle", f"{base}.caBundle")
    if plaintext:
        if secret_ref or wi:
            raise StoreInvalid(
                f"{label}: {base}.endpoint is plaintext; credentials are never sent without "
                "TLS (use an https:// endpoint, or no auth for an emulator)"
            )
        if not project:
            raise StoreInvalid(f"{label}: {base}.projectID is required")
        channel = grpc.aio.insecure_channel(host)
        transport = SecretManagerServiceGrpcAsyncIOTransport(channel=channel)
        return _Conn(SecretManagerServiceAsyncClient(transport=transport), project)
    pem = ca_bundle(ca, f"{base}.caBundle", label) if ca else None

    credentials: Any
    refresh = None
    if secret_ref:
        key_ref = secret_ref.get("secretAccessKeySecretRef")
        path = f"{base}.auth.secretRef.secretAccessKeySecretRef"
        if not key_ref:
            raise StoreInvalid(f"{label}: {path} is required")
        info = parse_sa_key(await resolve_ref(ctx, key_ref, path), what=label)
        credentials = _sa_credentials(info, label)
        project = project or info.get("project_id")
    elif wi:
        from secretsync.backends import gcp_channel, gcp_workload

        credentials = await gcp_workload.credentials(ctx, wi, project, SCOPES)
        http = gcp_channel.session(pem)
        refresh = gcp_channel.refresher(credentials, http)
    else:
        try:
            credentials, adc_project = await asyncio.to_thread(_adc)
        except auth_exc.GoogleAuthError as exc:
            raise translate(exc, label) from exc
        project = project or adc_project
    if not project:
        raise StoreInvalid(f"{label}: {base}.projectID is required")
    if pem is not None:
        from secretsync.backends import gcp_channel

        channel = gcp_channel.trusting_channel(host or DEFAULT_ENDPOINT, credentials, pem)
        transport = SecretManagerServiceGrpcAsyncIOTransport(channel=channel)
        return _Conn(SecretManagerServiceAsyncClient(transport=transport), str(project), refresh)
    options = ClientOptions(api_endpoint=host) if host else None
    client = SecretManagerServiceAsyncClient(credentials=credentials, client_options=options)
    return _Conn(client, str(project), refresh)


def _sa_credentials(info: dict[str, Any], label: str) -> Any:
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=SCOPES
        )
    except (ValueError, auth_exc.GoogleAuthError) as exc:
        raise StoreInvalid(f"{label}: the service-account key cannot be loaded") from exc


def _adc() -> tuple[Any, str | None]:
    import google.auth

    creds, project = google.auth.default(scopes=SCOPES)
    return creds, project


class GcpBackend:
    """A connected store: one project's secrets."""

    def __init__(self, conn: _Conn, label: str) -> None:
        self._client = conn.client
        self._refresh = conn.refresh
        self.project = conn.project
        self._label = label
        self._closed = False

    async def _fresh(self) -> None:
        if self._refresh is not None:
            await self._refresh()

    def _what(self, key: str, version: str | None = None) -> str:
        return f"GCP secret {key!r}" + (f" version {version!r}" if version else "")

    async def validate(self) -> None:
        """List one secret: proves reachability, credentials and the project without reading
        a secret value."""
        with track("gcpsm", "validate"):
            try:
                await self._fresh()
                await self._client.list_secrets(
                    request={"parent": f"projects/{self.project}", "page_size": 1},
                    retry=_RETRY,
                    timeout=_TIMEOUT,
                )
            except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as exc:
                raise translate(exc, f"{self._label} (project {self.project!r})") from exc

    async def _access(self, key: str, version: str | None) -> bytes:
        name = f"{secret_path(self.project, key)}/versions/{version_id(version)}"
        what = self._what(key, version)
        with track("gcpsm", "get"):
            try:
                await self._fresh()
                resp = await self._client.access_secret_version(
                    name=name, retry=_RETRY, timeout=_TIMEOUT
                )
            except gexc.FailedPrecondition as exc:
                state = await self._state(name)
                hint = "enable it" if state == "DISABLED" else "add a new version"
                raise SecretNotFound(
                    f"{what}: the version is {state}; {hint} or pin another"
                ) from exc
            except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as exc:
                raise translate(exc, what) from exc
        return bytes(resp.payload.data)

    async def _state(self, name: str) -> str:
        """DISABLED / DESTROYED / ... for a version the server refused (metadata only)."""
        try:
            meta = await self._client.get_secret_version(name=name, timeout=_TIMEOUT)
        except (gexc.GoogleAPIError, auth_exc.GoogleAuthError):
            return "not enabled"
        state = SecretVersion.State(meta.state).name
        return state if state not in ("ENABLED", "STATE_UNSPECIFIED") else "not enabled"

    async def get(self, ref: RemoteRef) -> bytes:
        raw = await self._access(ref.key, ref.version)
        if ref.property:
            return _select_property(raw, ref.property, what=self._what(ref.key, ref.version))
        return raw

    async def get_map(self, ref: RemoteRef) -> dict[str, bytes]:
        return json_map(await self.get(ref), what=self._what(ref.key, ref.version))

    async def find(self, query: FindQuery) -> dict[str, bytes]:
        pattern = compile_regexp(query.name_regexp, what=self._label)
        tags = dict(query.tags)
        request: dict[str, Any] = {"parent": f"projects/{self.project}", "page_size": 250}
        if tags:
            request["filter"] = label_filter(tags)
        names: list[str] = []
        with track("gcpsm", "find"):
            try:
                await self._fresh()
                pager = await self._client.list_secrets(
                    request=request, retry=_RETRY, timeout=_TIMEOUT
                )
                async for secret in pager:
                    short = str(secret.name).rsplit("/", 1)[-1]
                    if query.path and not short.startswith(query.path):
                        continue
                    if pattern is not None and not pattern.search(short):
                        continue
                    if not tags_match(dict(secret.labels), tags):
                        continue
                    names.append(short)
            except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as exc:
                raise translate(exc, f"{self._label} (project {self.project!r})") from exc
        limit = asyncio.Semaphore(_FIND_CONCURRENCY)

        async def one(short: str) -> tuple[str, bytes | None]:
            async with limit:
                try:
                    return short, await self._access(short, None)
                except SecretNotFound:
                    return short, None  # no enabled version (or deleted meanwhile)

        results = await asyncio.gather(*(one(n) for n in names))
        return {name: value for name, value in results if value is not None}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.transport.close()


async def create(ctx: StoreContext) -> Backend:
    """Entry point ``gcpsm``: parse the store, resolve credentials, open one channel."""
    label = store_label(ctx)
    conn = await _connect(ctx)
    return GcpBackend(conn, label)
