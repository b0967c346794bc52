"""kopf handlers of the SealedSecret engine: SealedSecret events, and the events of the
Secrets it manages (self-healing). Registered explicitly on a registry (``register``); each
hands the event to the engine.

Only ``on.event`` handlers are used, so kopf stores nothing on the objects (no progress or
diff-base annotations -- on a Secret those would be copies of its data).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from secretsync import api
from secretsync.controller import metrics
from secretsync.controller.sealed.engine import SealedEngine, owner_ref
from secretsync.reconcile.secrets import controller_ref, plan_secret

log = logging.getLogger("secretsync.sealed")


def plain(body: Any) -> dict[str, Any]:
    """kopf's Body -> a plain dict (kopf bodies are read-only views over the raw dict)."""
    if isinstance(body, dict):
        return body
    raw = getattr(body, "_src", None)
    if isinstance(raw, dict):
        return raw
    return {k: body[k] for k in body}


async def on_sealed_event(engine: SealedEngine, event: Mapping[str, Any], body: Any) -> None:
    obj = plain(event.get("object", body))
    meta = obj.get("metadata") or {}
    uid = str(meta.get("uid"))
    started = engine.synced_at_start
    synced_version = started.pop(uid, None) if started else None
    if event.get("type") == "DELETED":
        engine.forget(obj)
        return  # the Secret goes with it: ownerReference garbage collection
    if synced_version == str(meta.get("resourceVersion")):
        return  # kopf's listing of the very version the initial sync reconciled
    await engine.reconcile(obj)


async def on_secret_event(engine: SealedEngine, event: Mapping[str, Any], body: Any) -> None:
    """Self-healing: a managed Secret was deleted or edited -> restore it from its owner."""
    secret = plain(event.get("object", body))
    ref = controller_ref(secret)
    if ref is None or ref.get("kind") != api.KIND_SEALED:
        return
    group = str(ref.get("apiVersion", "")).partition("/")[0]
    if group not in engine.groups:
        return
    meta = secret.get("metadata") or {}
    cached = engine.cache.get(str(ref.get("uid")))
    kind = event.get("type")
    where = (str(meta.get("namespace")), str(meta.get("name")))
    if kind == "DELETED":
        engine.index.pop(where, None)
    else:
        engine.index[where] = secret
    if kind != "DELETED":
        if cached is None:
            if kind is None:
                return  # initial listing: the SealedSecret's own initial event covers it
        elif plan_secret(secret, cached.desired).action == "none":
            return  # our own write, or an unrelated change we do not track
    log.info("Secret %s/%s was %s; restoring it from its SealedSecret",
             meta.get("namespace"), meta.get("name"),
             "deleted" if kind == "DELETED" else "changed")
    await engine.reconcile_ref(owner_ref(ref, meta.get("namespace")), restored=True)


def register(engine: SealedEngine, registry: Any) -> None:
    """The engine's handlers on ``registry``, and its reaction to key changes."""
    import kopf

    async def sealed_event(event: Mapping[str, Any], body: Any, **_: Any) -> None:
        await on_sealed_event(engine, event, body)

    async def secret_event(event: Mapping[str, Any], body: Any, **_: Any) -> None:
        await on_secret_event(engine, event, body)

    for group, version in engine.groups.items():
        kopf.on.event(group, version, api.PLURAL_SEALED, registry=registry,
                      id=f"sealed-{group}")(sealed_event)
    kopf.on.event("", "v1", "secrets", registry=registry, id="sealed-secrets",
                  labels={api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE})(secret_event)
    engine.rt.keys.on_change(engine.retry_after_key_change)
    metrics.KEY_COUNT.set(len(engine.rt.keys.registry))

