"""Vault auth method ``tokenSecretRef``: a static token kept in a Kubernetes Secret.

Why this module exists: one module per auth method. This one makes no Vault call; the token is
read from its Secret on every (re-)login, so a rotated Secret is picked up after a 401/403.
"""

from __future__ import annotations

from secretsync.backends.base import StoreContext
from secretsync.backends.vault.config import TokenAuth
from secretsync.backends.vault.login import Login, LoginCall


async def login(auth: TokenAuth, ctx: StoreContext, what: str, call: LoginCall) -> Login:
    """The token from its Secret; it never expires as far as we know (no TTL, no renewal)."""
    ref = auth.token_ref
    raw = await ctx.resolve_secret(ref.namespace or ctx.namespace, ref.name, ref.key)
    return Login(raw.decode().strip(), ttl=0.0, renewable=False, issued=False)
