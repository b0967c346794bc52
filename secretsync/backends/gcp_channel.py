"""A TLS channel to GCP Secret Manager that trusts a given CA bundle, and token refresh.

Why this module exists: ``spec.provider.gcpsm.caBundle`` (our addition, like the Vault and
Azure ones) lets a store reach a private or test endpoint whose certificate is not signed by a
public CA. Both connections the client makes must trust it: the gRPC channel to Secret Manager
and the HTTPS requests ``google-auth`` makes while refreshing a token (STS, IAM Credentials).
The bundle stays in memory; no file is written. ``refresher`` refreshes workload identity
credentials ahead of each call, so a refused identity is an auth error at the call site.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
import requests
from requests.adapters import HTTPAdapter


class _TrustingAdapter(HTTPAdapter):
    """Verifies TLS against one in-memory CA bundle (no file to clean up)."""

    def __init__(self, pem: bytes) -> None:
        self._context = ssl.create_default_context(cadata=pem.decode())
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


def session(pem: bytes | None) -> requests.Session:
    """The HTTPS session ``google-auth`` refreshes tokens with (trusting ``pem`` if given)."""
    s = requests.Session()
    if pem is not None:
        s.mount("https://", _TrustingAdapter(pem))
    return s


def refresher(credentials: Any, http: requests.Session) -> Callable[[], Awaitable[None]]:
    """Refresh ``credentials`` ahead of a call, in a worker thread, when they are not valid.

    Left to the gRPC metadata plugin, a refused refresh would surface as an INTERNAL /
    UNAVAILABLE status (and a logged traceback); done here, it raises google-auth's
    ``RefreshError`` at the call site, where it is translated into a ``BackendAuthError``.
    The plugin then finds valid credentials and only attaches them."""
    import google.auth.transport.requests as auth_requests

    request = auth_requests.Request(http)
    lock = asyncio.Lock()

    async def refresh() -> None:
        if credentials.valid:
            return
        async with lock:
            if not credentials.valid:
                await asyncio.to_thread(credentials.refresh, request)

    return refresh


def trusting_channel(host: str, credentials: Any, pem: bytes) -> Any:
    """A TLS channel trusting ``pem`` (``caBundle``, our addition) — for the Secret Manager
    endpoint and for the token endpoints the credentials call while refreshing."""
    import google.auth.transport.grpc as auth_grpc
    import google.auth.transport.requests as auth_requests

    plugin = auth_grpc.AuthMetadataPlugin(  # type: ignore[no-untyped-call]
        credentials, auth_requests.Request(session(pem))
    )
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=pem),
        grpc.metadata_call_credentials(plugin),
    )
    return grpc.aio.secure_channel(host, creds)
