"""Vault auth method ``jwt``: a JWT exchanged at a JWT/OIDC auth mount for a Vault token.

Why this module exists: one module per auth method. The JWT is a TokenRequest token of the
configured ServiceAccount (audiences and lifetime as configured; Vault checks it against the
mount's ``jwt_validation_pubkeys``, JWKS or OIDC discovery, and the role's bound claims) or a
token kept in a Secret, read on every login. Neither is ever logged or put in an error.
"""

from __future__ import annotations

from secretsync.backends.base import StoreContext
from secretsync.backends.vault.config import JwtAuth
from secretsync.backends.vault.login import Login, LoginCall, from_response, jwt_from


async def login(auth: JwtAuth, ctx: StoreContext, what: str, call: LoginCall) -> Login:
    """Get the JWT, log in at ``auth.path`` as ``auth.role``; ``what`` names the store."""
    jwt = await jwt_from(
        ctx, f"{what}: JWT auth", service_account=auth.service_account, token_ref=auth.token_ref
    )
    role = f"role {auth.role!r}" if auth.role else "the default role"
    resp = await call(
        f"{what}: JWT login at {auth.path!r} as {role}",
        lambda c: c.auth.jwt.jwt_login(role=auth.role, jwt=jwt, path=auth.path, use_token=False),
    )
    return from_response(resp, what)
