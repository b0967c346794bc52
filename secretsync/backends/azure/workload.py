"""Azure workload identity for one store's ServiceAccount (``authType: WorkloadIdentity`` with
``serviceAccountRef``).

Why this module exists: the controller's own workload identity (the webhook-injected token
file) serves only stores without ``serviceAccountRef``. With it, each store federates its own
ServiceAccount: a TokenRequest token of that ServiceAccount for the audience
``api://AzureADTokenExchange`` is the client assertion of a client-credentials request to
Entra ID, for the app registration named by the store (``authSecretRef.clientId``,
``tenantId``) or, when the store leaves them out, by the ServiceAccount's annotations
``azure.workload.identity/client-id`` / ``tenant-id`` — the ones the Azure workload identity
webhook reads. A fresh TokenRequest is made only when Entra ID is asked for a new token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from azure.core.credentials import AccessTokenInfo
from azure.identity.aio import ClientAssertionCredential

from secretsync.backends._common import (
    service_account_annotations,
    service_account_ref,
    service_account_token,
    store_label,
)
from secretsync.backends.base import StoreContext
from secretsync.errors import StoreInvalid

AUDIENCE = "api://AzureADTokenExchange"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"


class ServiceAccountCredential(ClientAssertionCredential):
    """A ``ClientAssertionCredential`` whose assertion is a TokenRequest token, requested
    (asynchronously) each time the SDK needs a new Entra ID token — the SDK's own assertion
    callback is synchronous, so the token is fetched just before and handed to it."""

    def __init__(
        self, tenant_id: str, client_id: str, fetch: Callable[[], Awaitable[str]], **kwargs: Any
    ) -> None:
        self._assertion = ""
        self._fetch = fetch
        super().__init__(tenant_id, client_id, lambda: self._assertion, **kwargs)

    async def _request_token(self, *scopes: str, **kwargs: Any) -> AccessTokenInfo:
        self._assertion = await self._fetch()
        try:
            return await super()._request_token(*scopes, **kwargs)
        finally:
            self._assertion = ""


async def credential(
    ctx: StoreContext,
    sa_block: Any,
    client_id: str | None,
    tenant_id: str | None,
    entra: Mapping[str, Any],
) -> ServiceAccountCredential:
    """The credential for ``serviceAccountRef``; ``client_id`` / ``tenant_id`` come from the
    store (None: from the ServiceAccount's annotations); ``entra`` holds the transport and
    authority settings."""
    path = "spec.provider.azurekv.serviceAccountRef"
    label = store_label(ctx)
    sa = service_account_ref(ctx, sa_block, path)
    if client_id is None or tenant_id is None:
        annotations = await service_account_annotations(ctx, sa, path)
        client_id = client_id or annotations.get(CLIENT_ID_ANNOTATION) or None
        tenant_id = tenant_id or annotations.get(TENANT_ID_ANNOTATION) or None
    if not client_id:
        raise StoreInvalid(
            f"{label}: workload identity needs a client id: set "
            f"spec.provider.azurekv.authSecretRef.clientId or annotate ServiceAccount "
            f"{sa.namespace}/{sa.name} with {CLIENT_ID_ANNOTATION}"
        )
    if not tenant_id:
        raise StoreInvalid(
            f"{label}: workload identity needs a tenant id: set spec.provider.azurekv.tenantId "
            f"or annotate ServiceAccount {sa.namespace}/{sa.name} with {TENANT_ID_ANNOTATION}"
        )
    audiences = [AUDIENCE, *(a for a in sa.audiences if a != AUDIENCE)]

    async def fetch() -> str:
        return await service_account_token(ctx, sa, audiences, path)

    try:
        return ServiceAccountCredential(tenant_id, client_id, fetch, **entra)
    except ValueError as exc:  # a malformed tenant id; the SDK's text may quote it
        raise StoreInvalid(f"{label}: workload identity: the tenant id is malformed") from exc
