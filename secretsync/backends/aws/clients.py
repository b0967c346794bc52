"""The botocore session and clients of one AWS store, with its auth method wired in.

Why this module exists: it composes the auth modules (static keys, web identity, AssumeRole,
or the default chain) into one session and creates the two clients a store keeps for its
lifetime: the secrets service's and STS's (``validate``), both with the same retry policy,
region and endpoint. Blocking: botocore loads its models here.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.session import Session

from secretsync.backends.aws import (
    auth_assume_role,
    auth_static,
    auth_web_identity,
    parameter_store,
    secrets_manager,
)
from secretsync.backends.aws.auth_static import StaticKeys
from secretsync.backends.aws.auth_web_identity import WebIdentity
from secretsync.backends.aws.config import SECRETS_MANAGER, AwsSettings

# botocore retries throttling and 5xx with exponential backoff and jitter ("standard" mode)
# before we see the error; what is left becomes BackendUnavailable and the engine backs off.
_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=15,
    max_pool_connections=16,
    user_agent_extra="secretsync",
)


def build_clients(s: AwsSettings) -> tuple[Any, Any]:
    """(secrets service client, STS client)."""
    session = Session()

    # The role fetchers create their STS client lazily, from ``session`` as it is then
    # (the role-based session below), with explicit or unsigned credentials.
    def sts_creator(service: str, **kwargs: Any) -> Any:
        config = _CONFIG.merge(kwargs.pop("config")) if "config" in kwargs else _CONFIG
        return session.create_client(
            service, region_name=s.region, endpoint_url=s.endpoint, config=config, **kwargs
        )

    if isinstance(s.auth, StaticKeys):
        auth_static.install(session, s.auth)
    if s.role:
        fetcher: Any
        if isinstance(s.auth, WebIdentity):
            fetcher = auth_web_identity.fetcher(sts_creator, s.auth, s.role, s.session_name)
        else:
            fetcher = auth_assume_role.fetcher(
                sts_creator, session, s.role, s.external_id, s.session_name
            )
        session = auth_assume_role.session_using(fetcher)
    service = secrets_manager.CLIENT if s.service == SECRETS_MANAGER else parameter_store.CLIENT
    client = session.create_client(
        service, region_name=s.region, endpoint_url=s.endpoint, config=_CONFIG
    )
    sts = session.create_client(
        "sts", region_name=s.region, endpoint_url=s.endpoint, config=_CONFIG
    )
    return client, sts
