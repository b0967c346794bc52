"""AWS auth method ``auth.secretRef``: an access key (and optional session token) from Secrets.

Why this module exists: one module per auth method. The keys are resolved once, when the store
is built, and set on the botocore session; ``role`` may then assume a role with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.session import Session

from secretsync.backends._common import resolve_ref_str, store_label
from secretsync.backends.base import StoreContext
from secretsync.errors import StoreInvalid

_PATH = "spec.provider.aws.auth.secretRef"


@dataclass(frozen=True)
class StaticKeys:
    """Resolved ``auth.secretRef`` credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


async def resolve(ctx: StoreContext, secret_ref: Mapping[str, Any]) -> StaticKeys:
    """Check the block and read the referenced Secret keys."""
    for field_name in ("accessKeyIDSecretRef", "secretAccessKeySecretRef"):
        if not secret_ref.get(field_name):
            raise StoreInvalid(f"{store_label(ctx)}: {_PATH}.{field_name} is required")
    akid = await resolve_ref_str(
        ctx, secret_ref["accessKeyIDSecretRef"], f"{_PATH}.accessKeyIDSecretRef"
    )
    secret = await resolve_ref_str(
        ctx, secret_ref["secretAccessKeySecretRef"], f"{_PATH}.secretAccessKeySecretRef"
    )
    token = None
    if secret_ref.get("sessionTokenSecretRef"):
        token = await resolve_ref_str(
            ctx, secret_ref["sessionTokenSecretRef"], f"{_PATH}.sessionTokenSecretRef"
        )
    return StaticKeys(akid, secret, token)


def install(session: Session, keys: StaticKeys) -> None:
    """Make ``session`` sign with these keys."""
    session.set_credentials(keys.access_key_id, keys.secret_access_key, keys.session_token)
