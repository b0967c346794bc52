"""What a Vault auth method hands back to the backend, and how it calls Vault.

Why this module exists: the auth-method modules (``auth_token``, ``auth_approle``,
``auth_kubernetes``, ``auth_jwt``) and the backend's token lifecycle meet here, so neither
imports the other: an auth method gets a ``LoginCall`` (the backend's error-translating way to
run an hvac call) and returns a ``Login``. The two ways of getting a JWT that the Kubernetes
and JWT methods share (a TokenRequest, a Secret) are here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hvac

from secretsync.backends.base import StoreContext
from secretsync.backends.vault.config import SecretRef, ServiceAccountToken
from secretsync.errors import BackendAuthError, StoreInvalid

LoginCall = Callable[[str, Callable[[hvac.Client], Any]], Awaitable[Any]]
"""``(what, fn)``: run ``fn(client)`` unauthenticated in a worker thread, hvac / requests errors
translated (a rejected login is a ``BackendAuthError``) with ``what`` in the message."""


@dataclass(frozen=True)
class Login:
    """A token and how long it lives."""

    token: str = field(repr=False)
    ttl: float  # 0 = does not expire (or unknown, e.g. a static token)
    renewable: bool
    issued: bool  # True: Vault issued it in a login (counted in VaultBackend.logins)


def from_response(resp: Any, what: str) -> Login:
    """The token of a login response (``auth.client_token``, lease, renewable)."""
    auth = resp.get("auth") if isinstance(resp, Mapping) else None
    if not isinstance(auth, Mapping) or not auth.get("client_token"):
        raise BackendAuthError(f"{what}: Vault login returned no token")
    return Login(
        str(auth["client_token"]),
        ttl=float(auth.get("lease_duration") or 0),
        renewable=bool(auth.get("renewable")),
        issued=True,
    )


async def jwt_from(
    ctx: StoreContext,
    what: str,
    *,
    service_account: ServiceAccountToken | None,
    token_ref: SecretRef | None,
) -> str:
    """The JWT to present: a fresh TokenRequest token of ``service_account`` (never the
    controller's own), or the token kept in ``token_ref``'s Secret (read on every login, so
    a rotated Secret is picked up)."""
    if service_account is not None:
        if ctx.request_token is None:
            raise StoreInvalid(f"{what}: this auth method needs service-account tokens")
        sa = service_account
        return await ctx.request_token(
            sa.namespace or ctx.namespace,
            sa.name,
            list(sa.audiences),
            expiration_seconds=sa.expiration_seconds,
        )
    if token_ref is None:  # the config parser guarantees one of the two
        raise StoreInvalid(f"{what}: no token source")
    raw = await ctx.resolve_secret(token_ref.namespace or ctx.namespace, token_ref.name,
                                   token_ref.key)
    try:
        return raw.decode().strip()
    except UnicodeDecodeError as exc:
        raise StoreInvalid(
            f"{what}: the token in Secret {token_ref.name!r} key {token_ref.key!r} is not text"
        ) from exc
