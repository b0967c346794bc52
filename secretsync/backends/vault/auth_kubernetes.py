"""Vault auth method ``kubernetes``: a ServiceAccount token exchanged for a Vault token.

Why this module exists: one module per auth method. Each login asks the Kubernetes API for a
fresh TokenRequest token of the configured ServiceAccount (never the controller's own mounted
token) and presents it to Vault's Kubernetes auth mount as ``role``.
"""

from __future__ import annotations

from secretsync.backends.base import StoreContext
from secretsync.backends.vault.config import KubernetesAuth
from secretsync.backends.vault.login import Login, LoginCall, from_response
from secretsync.errors import StoreInvalid


async def login(auth: KubernetesAuth, ctx: StoreContext, what: str, call: LoginCall) -> Login:
    """Request the ServiceAccount token, log in at ``auth.mount``; ``what`` names the store."""
    if ctx.request_token is None:
        raise StoreInvalid(f"{what}: Kubernetes auth needs service-account tokens")
    jwt = await ctx.request_token(
        auth.sa_namespace or ctx.namespace, auth.sa_name, list(auth.sa_audiences)
    )
    resp = await call(
        f"{what}: Kubernetes login as role {auth.role!r}",
        lambda c: c.auth.kubernetes.login(
            role=auth.role, jwt=jwt, mount_point=auth.mount, use_token=False
        ),
    )
    return from_response(resp, what)
