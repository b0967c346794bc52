"""Entra ID for an Azure Key Vault store: which authority, and which credential.

Why this module exists: the auth half of ``spec.provider.azurekv`` (one branch per
``authType``) is kept apart from the Key Vault client and its error translation. Invalid
settings become one-line ``StoreInvalid`` errors naming the field, never quoting the input.

Store fields::

    azurekv:
      tenantId: 72f988bf-...                          # ServicePrincipal (and WorkloadIdentity
                                                      #   unless AZURE_TENANT_ID is set)
      authType: ServicePrincipal | ManagedIdentity | WorkloadIdentity   # default ServicePrincipal
      authSecretRef:                                  # ServicePrincipal
        clientId: {name, key, namespace}              #   (and WorkloadIdentity, optional)
        clientSecret: {name, key, namespace}          # or
        clientCertificate: {name, key, namespace}     #   a PEM holding certificate + key
      identityId: <client id>                         # ManagedIdentity: a user-assigned identity
      serviceAccountRef: {name, namespace, audiences} # WorkloadIdentity of this ServiceAccount
                                                      #   (see ``workload``); without it the
                                                      #   controller's own workload identity
      environmentType: PublicCloud | USGovernmentCloud | ChinaCloud | GermanCloud | AzureStackCloud
      customCloudConfig: {activeDirectoryEndpoint}    # AzureStackCloud: the Entra ID authority
"""

from __future__ import annotations

from typing import Any

from secretsync.backends._common import (
    opt_map,
    opt_str,
    req_str,
    resolve_ref,
    resolve_ref_str,
    store_label,
)
from secretsync.backends.base import StoreContext
from secretsync.errors import StoreInvalid

AUTHORITIES = {
    "PublicCloud": "login.microsoftonline.com",
    "USGovernmentCloud": "login.microsoftonline.us",
    "ChinaCloud": "login.chinacloudapi.cn",
    "GermanCloud": "login.microsoftonline.de",
}

def authority_for(ctx: StoreContext) -> str | None:
    """The Entra ID authority host for ``environmentType``; ``None`` = SDK default."""
    p = ctx.provider
    env = opt_str(ctx, p, "environmentType", "spec.provider.azurekv.environmentType")
    if env is None or env == "PublicCloud":
        return None
    if env in AUTHORITIES:
        return AUTHORITIES[env]
    if env == "AzureStackCloud":
        custom = opt_map(ctx, p, "customCloudConfig", "spec.provider.azurekv.customCloudConfig")
        return req_str(
            ctx,
            custom,
            "activeDirectoryEndpoint",
            "spec.provider.azurekv.customCloudConfig.activeDirectoryEndpoint",
        )
    raise StoreInvalid(
        f"{store_label(ctx)}: spec.provider.azurekv.environmentType must be one of "
        f"{', '.join([*AUTHORITIES, 'AzureStackCloud'])}"
    )


async def credential(ctx: StoreContext, common: dict[str, Any], authority: str | None) -> Any:
    """The ``azure.identity.aio`` credential for ``authType`` (imported on first use; the
    SDK is large). ``common`` holds the transport settings; ``authority`` the Entra ID host."""
    from azure.identity.aio import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    p = ctx.provider
    base = "spec.provider.azurekv"
    label = store_label(ctx)
    auth_type = opt_str(ctx, p, "authType", f"{base}.authType") or "ServicePrincipal"
    tenant = opt_str(ctx, p, "tenantId", f"{base}.tenantId")
    refs = opt_map(ctx, p, "authSecretRef", f"{base}.authSecretRef")
    entra = {**common, "authority": authority} if authority else common
    if auth_type == "ManagedIdentity":
        identity = opt_str(ctx, p, "identityId", f"{base}.identityId")
        return ManagedIdentityCredential(client_id=identity, **common)
    if auth_type == "WorkloadIdentity":
        client_id = None
        if refs.get("clientId"):
            client_id = await resolve_ref_str(
                ctx, refs["clientId"], f"{base}.authSecretRef.clientId"
            )
        if p.get("serviceAccountRef"):  # this store's own ServiceAccount, federated
            from secretsync.backends.azure import workload

            return await workload.credential(ctx, p["serviceAccountRef"], client_id, tenant, entra)
        try:
            return WorkloadIdentityCredential(tenant_id=tenant, client_id=client_id, **entra)
        except ValueError as exc:
            raise StoreInvalid(
                f"{label}: workload identity needs tenantId/clientId (or AZURE_TENANT_ID, "
                "AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE in the controller's environment)"
            ) from exc
    if auth_type != "ServicePrincipal":
        raise StoreInvalid(
            f"{label}: {base}.authType must be ServicePrincipal, ManagedIdentity or "
            "WorkloadIdentity"
        )
    if not tenant:
        raise StoreInvalid(f"{label}: {base}.tenantId is required for ServicePrincipal")
    if not refs.get("clientId"):
        raise StoreInvalid(f"{label}: {base}.authSecretRef.clientId is required")
    has_secret, has_cert = bool(refs.get("clientSecret")), bool(refs.get("clientCertificate"))
    if has_secret == has_cert:
        raise StoreInvalid(
            f"{label}: {base}.authSecretRef needs exactly one of clientSecret or clientCertificate"
        )
    client_id = await resolve_ref_str(ctx, refs["clientId"], f"{base}.authSecretRef.clientId")
    try:
        if has_secret:
            secret = await resolve_ref_str(
                ctx, refs["clientSecret"], f"{base}.authSecretRef.clientSecret"
            )
            return ClientSecretCredential(tenant, client_id, secret, **entra)
        pem = await resolve_ref(
            ctx, refs["clientCertificate"], f"{base}.authSecretRef.clientCertificate"
        )
        return CertificateCredential(tenant, client_id, certificate_data=pem, **entra)
    except ValueError as exc:
        # the SDK's messages name the problem (bad tenant id, unreadable certificate) but
        # can quote input, so only the field is named here
        field = "clientSecret" if has_secret else "clientCertificate"
        raise StoreInvalid(
            f"{label}: invalid ServicePrincipal settings (tenantId, clientId or {field} "
            "is malformed; the certificate must be PEM with its private key)"
        ) from exc
