"""AWS auth method ``auth.jwt``: per-store IRSA (AssumeRoleWithWebIdentity).

Why this module exists: one module per auth method. A TokenRequest token of the configured
ServiceAccount is exchanged at STS for ``role``. botocore asks for the token from a worker
thread whenever the role's credentials need refreshing, so the token source defined here
bridges back to the controller's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.credentials import AssumeRoleWithWebIdentityCredentialFetcher

from secretsync.backends._common import opt_map, opt_str, req_str, store_label
from secretsync.backends.base import StoreContext
from secretsync.errors import StoreInvalid

_PATH = "spec.provider.aws.auth.jwt"


@dataclass(frozen=True)
class WebIdentity:
    """``auth.jwt``: ``token`` returns a fresh ServiceAccount token; called from botocore's
    worker thread."""

    token: Callable[[], str]


def parse(ctx: StoreContext, jwt: Mapping[str, Any], role: str | None) -> WebIdentity:
    """Check the block and build the blocking token source for botocore's fetcher: it runs
    in a worker thread, so it hands the async TokenRequest to the running loop and waits."""
    label = store_label(ctx)
    ref = opt_map(ctx, jwt, "serviceAccountRef", f"{_PATH}.serviceAccountRef")
    name = req_str(ctx, ref, "name", f"{_PATH}.serviceAccountRef.name")
    namespace = opt_str(ctx, ref, "namespace", f"{_PATH}.serviceAccountRef.namespace")
    namespace = namespace or ctx.namespace
    if ctx.store_kind != "ClusterSecretStore" and namespace != ctx.namespace:
        raise StoreInvalid(
            f"{label}: {_PATH}.serviceAccountRef.namespace {namespace!r} is not allowed; a "
            "SecretStore may only use ServiceAccounts in its own namespace"
        )
    audiences = [str(a) for a in ref.get("audiences") or []] or ["sts.amazonaws.com"]
    if not role:
        raise StoreInvalid(f"{label}: spec.provider.aws.role is required with auth.jwt")
    request_token = ctx.request_token
    if request_token is None:
        raise StoreInvalid(f"{label}: auth.jwt needs ServiceAccount tokens, unavailable here")
    loop = asyncio.get_running_loop()

    async def fetch() -> str:
        return await request_token(namespace, name, audiences)

    def load() -> str:
        return asyncio.run_coroutine_threadsafe(fetch(), loop).result(timeout=30)

    return WebIdentity(token=load)


def fetcher(
    sts_creator: Callable[..., Any], auth: WebIdentity, role: str, session_name: str
) -> AssumeRoleWithWebIdentityCredentialFetcher:
    """The STS fetcher that trades the ServiceAccount token for ``role``'s credentials."""
    return AssumeRoleWithWebIdentityCredentialFetcher(
        client_creator=sts_creator,
        web_identity_token_loader=auth.token,
        role_arn=role,
        extra_args={"RoleSessionName": session_name},
    )
