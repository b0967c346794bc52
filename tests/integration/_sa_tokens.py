"""What the controller gives a backend for workload identity, backed by the sandbox API
server: TokenRequest tokens and ServiceAccount annotations, with a record of what was asked
(so tests can check audiences and lifetimes) and the tokens handed out (so they can check that
none leaks)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from secretsync.errors import StoreInvalid
from secretsync.kube import Kube


class Requests:
    """A ``TokenRequester`` backed by the sandbox API server."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.asked: list[tuple[str, str, list[str], int | None]] = []
        self.tokens: list[str] = []

    async def __call__(
        self, namespace: str, sa: str, audiences: list[str], /,
        expiration_seconds: int | None = None,
    ) -> str:
        self.asked.append((namespace, sa, audiences, expiration_seconds))
        token = await asyncio.to_thread(
            self.kube.request_token, namespace, sa, audiences=audiences or None,
            expiration_seconds=expiration_seconds or 600,
        )
        self.tokens.append(token)
        return token


async def read_annotations(kube: Kube, namespace: str, sa: str) -> Mapping[str, str]:
    """A ``ServiceAccountReader`` backed by the sandbox API server."""
    obj = await asyncio.to_thread(kube.get_service_account, namespace, sa)
    if obj is None:
        raise StoreInvalid(f"ServiceAccount {namespace}/{sa} does not exist")
    return dict((obj.get("metadata") or {}).get("annotations") or {})
