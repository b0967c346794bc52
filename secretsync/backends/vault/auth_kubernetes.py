"""Vault auth method ``kubernetes``: a ServiceAccount token exchanged for a Vault token.

Why this module exists: one module per auth method. Each login gets the ServiceAccount token
afresh — a TokenRequest token of the configured ServiceAccount (never the controller's own
mounted token), or the token kept in a Secret (``secretRef``) — and presents it to Vault's
Kubernetes auth mount as ``role``; Vault checks it by TokenReview.
"""

from __future__ import annotations

from secretsync.backends.base import StoreContext
from secretsync.backends.vault.config import KubernetesAuth
from secretsync.backends.vault.login import Login, LoginCall, from_response, jwt_from


async def login(auth: KubernetesAuth, ctx: StoreContext, what: str, call: LoginCall) -> Login:
    """Get the ServiceAccount token, log in at ``auth.mount``; ``what`` names the store."""
    jwt = await jwt_from(
        ctx, f"{what}: Kubernetes auth", service_account=auth.service_account,
        token_ref=auth.token_ref,
    )
    resp = await call(
        f"{what}: Kubernetes login as role {auth.role!r}",
        lambda c: c.auth.kubernetes.login(
            role=auth.role, jwt=jwt, mount_point=auth.mount, use_token=False
        ),
    )
    return from_response(resp, what)
