"""``spec.provider.aws`` parsed into ``AwsSettings``, with the auth method as a tagged union.

Why this module exists: a store spec is read here exactly once. The auth block becomes one of
``DefaultChain | StaticKeys | WebIdentity`` (each auth module owns its member of the union and
how it is read); ``role`` / ``externalID`` (AssumeRole) apply on top of the chosen source.
Errors are one-line ``StoreInvalid`` messages naming the store and the field.

Store fields::

    aws:
      service: SecretsManager | ParameterStore   # default SecretsManager
      region: eu-west-1                          # required
      role: arn:aws:iam::123:role/reader          # optional: AssumeRole via STS
      externalID: ...                             # optional, with role
      endpoint: http://127.0.0.1:5000             # our addition: VPC endpoint / other partition
                                                  # / sandbox; used for the service and STS
      auth:                                       # optional: no auth block = default chain
        secretRef:                                #   (env, web identity / IRSA, instance role)
          accessKeyIDSecretRef: {name, key, namespace}
          secretAccessKeySecretRef: {name, key, namespace}
          sessionTokenSecretRef: {name, key, namespace}   # optional
        jwt:                                      # or: per-store IRSA. A TokenRequest token of
          serviceAccountRef: {name, namespace, audiences}  # this ServiceAccount is exchanged
                                                  # for ``role`` (required here: unlike ESO we
                                                  # do not read the SA's role annotation)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from secretsync.backends._common import opt_map, opt_str, req_str, store_label
from secretsync.backends.aws import auth_static, auth_web_identity
from secretsync.backends.aws.auth_static import StaticKeys
from secretsync.backends.aws.auth_web_identity import WebIdentity
from secretsync.backends.base import StoreContext
from secretsync.errors import StoreInvalid

SECRETS_MANAGER = "SecretsManager"
PARAMETER_STORE = "ParameterStore"

_SESSION_NAME_BAD = re.compile(r"[^\w+=,.@-]")


@dataclass(frozen=True)
class DefaultChain:
    """No auth block: botocore's default chain (env, web identity / IRSA, instance role)."""


AwsAuth = DefaultChain | StaticKeys | WebIdentity


@dataclass(frozen=True)
class AwsSettings:
    """The parsed ``aws`` provider block (credentials already resolved)."""

    service: str
    region: str
    endpoint: str | None
    role: str | None
    external_id: str | None
    session_name: str
    auth: AwsAuth


def role_session_name(store_name: str) -> str:
    """A RoleSessionName AWS accepts (2-64 chars of ``[\\w+=,.@-]``) naming the store."""
    return _SESSION_NAME_BAD.sub("-", f"secretsync-{store_name}")[:64]


async def parse_settings(ctx: StoreContext) -> AwsSettings:
    """Validate the provider block and resolve the referenced credentials."""
    p = ctx.provider
    base = "spec.provider.aws"
    service = opt_str(ctx, p, "service", f"{base}.service") or SECRETS_MANAGER
    if service not in (SECRETS_MANAGER, PARAMETER_STORE):
        raise StoreInvalid(
            f"{store_label(ctx)}: {base}.service must be {SECRETS_MANAGER} or {PARAMETER_STORE}"
        )
    region = req_str(ctx, p, "region", f"{base}.region")
    endpoint = opt_str(ctx, p, "endpoint", f"{base}.endpoint")
    role = opt_str(ctx, p, "role", f"{base}.role")
    external_id = opt_str(ctx, p, "externalID", f"{base}.externalID")
    auth = opt_map(ctx, p, "auth", f"{base}.auth")
    jwt = opt_map(ctx, auth, "jwt", f"{base}.auth.jwt")
    method: AwsAuth
    if jwt:
        method = auth_web_identity.parse(ctx, jwt, role)
    elif secret_ref := opt_map(ctx, auth, "secretRef", f"{base}.auth.secretRef"):
        method = await auth_static.resolve(ctx, secret_ref)
    else:
        method = DefaultChain()
    return AwsSettings(
        service=service,
        region=region,
        endpoint=endpoint,
        role=role,
        external_id=external_id,
        session_name=role_session_name(ctx.store_name),
        auth=method,
    )
