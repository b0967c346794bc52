"""AWS ``role`` / ``externalID``: AssumeRole on top of the store's source credentials.

Why this module exists: assuming a role is a layer over whichever auth method supplied the
source credentials (static keys or the default chain; ``auth.jwt`` brings its own fetcher).
It also builds the session that signs with the assumed, auto-refreshing credentials, which
every role-based store (this one and web identity) ends up using.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import NoCredentialsError
from botocore.session import Session


class _FixedProvider(CredentialProvider):  # type: ignore[misc]
    """Hands a prepared (assumed-role, auto-refreshing) credentials object to a session."""

    METHOD = "assume-role"
    CANONICAL_NAME = "secretsync-assume-role"

    def __init__(self, credentials: Any) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Any:
        return self._credentials


def fetcher(
    sts_creator: Callable[..., Any],
    source: Session,
    role: str,
    external_id: str | None,
    session_name: str,
) -> AssumeRoleCredentialFetcher:
    """AssumeRole with ``source``'s credentials; ``NoCredentialsError`` when it has none."""
    extra: dict[str, Any] = {"RoleSessionName": session_name}
    if external_id:
        extra["ExternalId"] = external_id
    credentials = source.get_credentials()
    if credentials is None:
        raise NoCredentialsError()
    return AssumeRoleCredentialFetcher(
        client_creator=sts_creator,
        source_credentials=credentials,
        role_arn=role,
        extra_args=extra,
    )


def session_using(fetcher: Any) -> Session:
    """A fresh session whose only credentials are the role's, fetched on first use and
    refreshed before they expire."""
    assumed = DeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role"
    )
    session = Session()
    session.register_component(
        "credential_provider", CredentialResolver(providers=[_FixedProvider(assumed)])
    )
    return session
