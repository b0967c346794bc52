"""The AWS backend itself: one store's clients behind the ``Backend`` contract.

Why this module exists: it is the SDK boundary. Every call (to Secrets Manager or Parameter
Store, per ``service``, and to STS) runs off the event loop and every botocore error is
translated by ``errors.translate`` into the contract's types, with a message naming the secret
and the AWS error code, never the value or the response body. The clients are built once per
store (``clients``), reused, and closed on cleanup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from secretsync.backends._common import compile_regexp, store_label
from secretsync.backends.aws import parameter_store, secrets_manager
from secretsync.backends.aws.clients import build_clients
from secretsync.backends.aws.config import SECRETS_MANAGER, AwsSettings, parse_settings
from secretsync.backends.aws.errors import translate
from secretsync.backends.base import (
    Backend,
    FindQuery,
    RemoteRef,
    StoreContext,
    json_map,
    select_property,
)
from secretsync.backends.metrics import track

T = TypeVar("T")


class AwsBackend:
    """A connected store: Secrets Manager or Parameter Store, per ``service``."""

    def __init__(self, settings: AwsSettings, client: Any, sts: Any, label: str) -> None:
        self._s = settings
        self._client = client
        self._sts = sts
        self._label = label
        self._sm = settings.service == SECRETS_MANAGER
        # ARN of the identity the store acts as, set by validate() (for logs and tests)
        self.caller_arn: str | None = None

    def _what(self, key: str, version: str | None = None) -> str:
        kind = secrets_manager.KIND if self._sm else parameter_store.KIND
        return f"{kind} {key!r}" + (f" version {version!r}" if version else "")

    async def _call(self, operation: str, what: str, fn: Callable[[], T]) -> T:
        with track("aws", operation):
            try:
                return await asyncio.to_thread(fn)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, what) from exc

    async def validate(self) -> None:
        """STS GetCallerIdentity: proves the credentials (and the role) without reading a
        secret; needs no IAM permission."""
        ident = await self._call("validate", self._label, self._sts.get_caller_identity)
        self.caller_arn = str(ident.get("Arn", "")) or None

    async def get(self, ref: RemoteRef) -> bytes:
        what = self._what(ref.key, ref.version)
        read = secrets_manager.get if self._sm else parameter_store.get
        raw = await self._call("get", what, partial(read, self._client, ref.key, ref.version))
        if ref.property:
            return select_property(raw, ref.property, what=what)
        return raw

    async def get_map(self, ref: RemoteRef) -> dict[str, bytes]:
        return json_map(await self.get(ref), what=self._what(ref.key))

    async def find(self, query: FindQuery) -> dict[str, bytes]:
        pattern = compile_regexp(query.name_regexp, what=self._label)
        fn = secrets_manager.find if self._sm else parameter_store.find
        return await self._call(
            "find", self._label, partial(fn, self._client, query.path, pattern, dict(query.tags))
        )

    async def close(self) -> None:
        for c in (self._client, self._sts):
            await asyncio.to_thread(c.close)


async def create(ctx: StoreContext) -> Backend:
    """Entry point ``aws``: parse the store, resolve credentials, build the clients once."""
    label = store_label(ctx)
    settings = await parse_settings(ctx)
    try:
        client, sts = await asyncio.to_thread(build_clients, settings)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, label) from exc
    return AwsBackend(settings, client, sts, label)
