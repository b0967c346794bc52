"""GKE workload identity for one GCP Secret Manager store (``auth.workloadIdentity``).

Why this module exists: a store can act as a ServiceAccount of its own rather than the
controller's identity. The flow is Google's workload identity federation, run by
``google-auth``'s own external-account credentials:

1. a TokenRequest token of ``serviceAccountRef`` whose audience is the cluster's workload
   identity pool ``<clusterProjectID>.svc.id.goog`` (plus any ``audiences``);
2. that token exchanged at the Security Token Service (RFC 8693 token exchange) for a federated
   access token, with the audience
   ``identitynamespace:<pool>:https://container.googleapis.com/v1/projects/<clusterProjectID>/locations/<clusterLocation>/clusters/<clusterName>``
   (the pool and the cluster, as its OIDC issuer, that vouches for the token);
3. when the ServiceAccount is annotated ``iam.gke.io/gcp-service-account: <email>``, the
   federated token exchanged at IAM Credentials ``generateAccessToken`` for a token of that
   Google service account; without the annotation the federated token is used directly.

``google-auth`` refreshes the token from a worker thread (the gRPC metadata plugin), so the
subject-token supplier hands the async TokenRequest to the controller's event loop and waits.
``stsEndpoint`` / ``iamCredentialsEndpoint`` (our additions, https only) point the two
exchanges elsewhere (private endpoints, tests).
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass
from typing import Any

from google.auth import exceptions as auth_exc
from google.auth import identity_pool

from secretsync.backends._common import (
    opt_str,
    req_str,
    service_account_annotations,
    service_account_ref,
    service_account_token,
    store_label,
)
from secretsync.backends.base import StoreContext
from secretsync.errors import StoreInvalid

PATH = "spec.provider.gcpsm.auth.workloadIdentity"
GSA_ANNOTATION = "iam.gke.io/gcp-service-account"
STS = "https://sts.googleapis.com"
IAM_CREDENTIALS = "https://iamcredentials.googleapis.com"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
_HTTPS = re.compile(r"^https://[^/\s]+$")
_GSA = re.compile(r"^[^@\s/]+@[^@\s/]+$")


@dataclass(frozen=True)
class Federation:
    """What the exchanges need, derived from the store and the ServiceAccount."""

    pool: str  # <project>.svc.id.goog
    sts_audience: str
    token_url: str
    impersonation_url: str | None  # None: the federated token is used directly


def _endpoint(ctx: StoreContext, wi: Any, key: str, default: str) -> str:
    value = opt_str(ctx, wi, key, f"{PATH}.{key}")
    if value is None:
        return default
    value = value.rstrip("/")
    if not _HTTPS.match(value):
        raise StoreInvalid(f"{store_label(ctx)}: {PATH}.{key} must be https://<host>[:port]")
    return value


class _Supplier(identity_pool.SubjectTokenSupplier):
    """The subject token: a fresh TokenRequest token each time google-auth refreshes."""

    def __init__(self, ctx: StoreContext, fetch: Any) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._fetch = fetch
        self._label = store_label(ctx)

    def get_subject_token(self, context: Any, request: Any) -> str:
        if threading.get_ident() == self._loop_thread:
            # blocking here would deadlock the loop that has to serve the TokenRequest
            raise auth_exc.RefreshError(  # type: ignore[no-untyped-call]
                f"{self._label}: token refresh on the event loop"
            )
        future = asyncio.run_coroutine_threadsafe(self._fetch(), self._loop)
        return str(future.result(timeout=30))


async def credentials(
    ctx: StoreContext, wi: Any, project: str | None, scopes: list[str]
) -> Any:
    """``google-auth`` credentials for ``auth.workloadIdentity`` (``wi``); ``project`` is the
    store's ``projectID`` (the default ``clusterProjectID``)."""
    label = store_label(ctx)
    sa = service_account_ref(ctx, wi.get("serviceAccountRef"), f"{PATH}.serviceAccountRef")
    location = req_str(ctx, wi, "clusterLocation", f"{PATH}.clusterLocation")
    cluster = req_str(ctx, wi, "clusterName", f"{PATH}.clusterName")
    cluster_project = opt_str(ctx, wi, "clusterProjectID", f"{PATH}.clusterProjectID") or project
    if not cluster_project:
        raise StoreInvalid(f"{label}: {PATH}.clusterProjectID (or projectID) is required")
    sts = _endpoint(ctx, wi, "stsEndpoint", STS)
    iam = _endpoint(ctx, wi, "iamCredentialsEndpoint", IAM_CREDENTIALS)
    gsa = (await service_account_annotations(ctx, sa, f"{PATH}.serviceAccountRef")).get(
        GSA_ANNOTATION
    )
    if gsa is not None and not _GSA.match(gsa):
        raise StoreInvalid(
            f"{label}: the {GSA_ANNOTATION} annotation of ServiceAccount {sa.namespace}/"
            f"{sa.name} is not a service account email"
        )
    pool = f"{cluster_project}.svc.id.goog"
    issuer = (
        f"https://container.googleapis.com/v1/projects/{cluster_project}/locations/{location}"
        f"/clusters/{cluster}"
    )
    fed = Federation(
        pool=pool,
        sts_audience=f"identitynamespace:{pool}:{issuer}",
        token_url=f"{sts}/v1/token",
        impersonation_url=(
            f"{iam}/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken" if gsa else None
        ),
    )
    audiences = [pool, *(a for a in sa.audiences if a != pool)]

    async def fetch() -> str:
        return await service_account_token(ctx, sa, audiences, f"{PATH}.serviceAccountRef")

    kwargs: dict[str, Any] = {"scopes": scopes}
    if fed.impersonation_url:
        kwargs["service_account_impersonation_url"] = fed.impersonation_url
    try:
        return identity_pool.Credentials(  # type: ignore[no-untyped-call]
            fed.sts_audience,
            JWT_TYPE,
            token_url=fed.token_url,
            subject_token_supplier=_Supplier(ctx, fetch),
            **kwargs,
        )
    except (ValueError, auth_exc.GoogleAuthError) as exc:
        raise StoreInvalid(f"{label}: {PATH} cannot be used ({type(exc).__name__})") from exc
