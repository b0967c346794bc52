"""The key of the ExternalSecret data hash: load it, or generate and persist it first.

The data hash in an ExternalSecret's status and on its Secret is an HMAC (see
``reconcile.external.data_hash``) so that someone who can read the ExternalSecret but not the
Secret cannot test guesses of a short value offline. Its key is 32 random bytes in the Secret
``<controller-name>-hash-key`` (key ``hmac.key``) in the controller namespace. A generated key
is created *before* it is used, so no hash is ever written under a key that exists nowhere; if
another replica created it first (409) we read theirs. It is loaded once per process; losing
the Secret only costs one rewrite of every hash (a new key is generated at the next start).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from typing import Any

from secretsync import api
from secretsync.controller.runtime import kube_call
from secretsync.errors import KubeConflict, SecretSyncError
from secretsync.kube import Kube

log = logging.getLogger("secretsync.external")


def secret_name(controller_name: str) -> str:
    return f"{controller_name}{api.HASH_KEY_SECRET_SUFFIX}"


def key_from_secret(secret: dict[str, Any], namespace: str, name: str) -> bytes:
    """The key held by the Secret; a clear error (never the value) when it is unusable."""
    raw = (secret.get("data") or {}).get(api.HASH_KEY_DATA_KEY)
    if not raw:
        raise SecretSyncError(
            f"hash-key Secret {namespace}/{name} has no {api.HASH_KEY_DATA_KEY!r} entry",
            reason="InvalidHashKey",
        )
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretSyncError(
            f"hash-key Secret {namespace}/{name}: {api.HASH_KEY_DATA_KEY!r} is not base64",
            reason="InvalidHashKey",
        ) from exc
    if len(key) < api.HASH_KEY_BYTES:
        raise SecretSyncError(
            f"hash-key Secret {namespace}/{name}: {api.HASH_KEY_DATA_KEY!r} holds "
            f"{len(key)} bytes, at least {api.HASH_KEY_BYTES} are required",
            reason="InvalidHashKey",
        )
    return key


def secret_body(namespace: str, name: str, key: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE},
        },
        "type": "Opaque",
        "data": {api.HASH_KEY_DATA_KEY: base64.b64encode(key).decode("ascii")},
    }


async def load_or_create(kube: Kube, namespace: str, controller_name: str) -> bytes:
    """Read the key; if its Secret is absent, create one with a fresh key (persist before
    use); on a Conflict (another replica won the race) read theirs."""
    name = secret_name(controller_name)
    secret = await kube_call(kube.get_secret, namespace, name)
    if secret is None:
        body = secret_body(namespace, name, secrets.token_bytes(api.HASH_KEY_BYTES))
        try:
            secret = await kube_call(kube.create_secret, namespace, body)
            log.info("generated the data-hash key and stored it in Secret %s/%s", namespace, name)
        except KubeConflict:
            secret = await kube_call(kube.get_secret, namespace, name)
            if secret is None:
                raise SecretSyncError(
                    f"hash-key Secret {namespace}/{name} was created and deleted concurrently",
                    reason="InvalidHashKey",
                ) from None
    return key_from_secret(secret, namespace, name)
