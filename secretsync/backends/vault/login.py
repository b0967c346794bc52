"""What a Vault auth method hands back to the backend, and how it calls Vault.

Why this module exists: the auth-method modules (``auth_token``, ``auth_approle``,
``auth_kubernetes``) and the backend's token lifecycle meet here, so neither imports the other:
an auth method gets a ``LoginCall`` (the backend's error-translating way to run an hvac call)
and returns a ``Login``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hvac

from secretsync.errors import BackendAuthError

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
