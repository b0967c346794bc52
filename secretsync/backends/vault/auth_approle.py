"""Vault auth method ``appRole``: a role id and a secret id exchanged for a token.

Why this module exists: one module per auth method. The secret id (and the role id, when given
as ``roleRef``) is read from its Secret on every login, then one AppRole login call is made.
"""

from __future__ import annotations

from secretsync.backends.base import StoreContext
from secretsync.backends.vault.config import AppRoleAuth, SecretRef
from secretsync.backends.vault.login import Login, LoginCall, from_response


async def login(auth: AppRoleAuth, ctx: StoreContext, what: str, call: LoginCall) -> Login:
    """Resolve the ids, log in at ``auth.path``; ``what`` names the store."""
    ns = ctx.namespace
    sref = auth.secret_id_ref
    secret_id = await ctx.resolve_secret(sref.namespace or ns, sref.name, sref.key)
    role_id = auth.role_id
    if isinstance(role_id, SecretRef):
        raw = await ctx.resolve_secret(role_id.namespace or ns, role_id.name, role_id.key)
        role_id = raw.decode().strip()
    sid = secret_id.decode().strip()
    resp = await call(
        f"{what}: AppRole login",
        lambda c: c.auth.approle.login(
            role_id=role_id, secret_id=sid, mount_point=auth.path, use_token=False
        ),
    )
    return from_response(resp, what)
