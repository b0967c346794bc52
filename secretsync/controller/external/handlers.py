"""kopf handlers for ExternalSecrets, SecretStores, ClusterSecretStores and the Secrets they
manage, registered explicitly on a registry (``register``). Thin on purpose: each handler
hands the raw event to the engine (``engine.ExternalEngine``), which owns scheduling,
fetching and writing.

The engine is built in kopf's startup handler (the data-hash key must be loaded first, with
kopf's retries) and kept by the handlers' closure; events that arrive before it exists (none
do: kopf runs startup handlers before it watches) would be reported by kopf.

Only event handlers are used (no kopf timers, daemons or change handlers), so kopf never adds
a finalizer, a progress annotation or a diff-base copy to our objects.
"""

from __future__ import annotations

import logging
from typing import Any

from secretsync import api
from secretsync.controller.external import hashkey
from secretsync.controller.external.engine import ExternalEngine
from secretsync.controller.runtime import Runtime
from secretsync.errors import KubeError, KubeForbidden, SecretSyncError

log = logging.getLogger("secretsync.external")


def _obj(event: Any) -> dict[str, Any]:
    obj = event.get("object")
    return obj if isinstance(obj, dict) else dict(obj or {})


async def start(rt: Runtime) -> ExternalEngine:
    """Load (or create) the data-hash key, then build and start the engine. kopf errors tell
    kopf to retry (API trouble) or to give up (RBAC, a malformed key Secret)."""
    import kopf

    settings = rt.settings
    workers = settings.external.workers
    # The data-hash key, once per process, before any hash is computed or compared.
    try:
        hash_key = await hashkey.load_or_create(
            rt.kube, settings.controller_namespace, settings.controller_name
        )
    except KubeError as exc:
        if isinstance(exc, KubeForbidden):
            raise kopf.PermanentError(f"data-hash key: {exc.message}") from None
        log.warning("data-hash key not loaded (%s); retrying", exc.message)
        raise kopf.TemporaryError(f"data-hash key: {exc.message}", delay=5) from None
    except SecretSyncError as exc:
        log.error("ExternalSecret engine not started: %s", exc.message)
        raise kopf.PermanentError(exc.message) from None
    engine = ExternalEngine(rt.kube, hash_key=hash_key, workers=workers,
                            window=settings.external.fetch_window)
    engine.start()
    log.info("ExternalSecret engine started (%d workers)", workers)
    return engine


def register(rt: Runtime, registry: Any) -> None:
    """The ExternalSecret engine's handlers on ``registry``."""
    import kopf

    running: list[ExternalEngine] = []  # the engine, once kopf's startup built it

    def engine() -> ExternalEngine:
        if not running:
            raise RuntimeError("ExternalSecret engine not started")
        return running[0]

    @kopf.on.startup(registry=registry, id="external-start")
    async def start_external(**_: Any) -> None:
        eng = await start(rt)
        running.append(eng)
        rt.resyncers.append(eng.resync)

    @kopf.on.cleanup(registry=registry, id="external-stop")
    async def stop_external(**_: Any) -> None:
        while running:
            eng = running.pop()
            if eng.resync in rt.resyncers:
                rt.resyncers.remove(eng.resync)
            await eng.stop()

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, registry=registry,
                   id="external-secrets")
    async def on_external_event(event: Any, **_: Any) -> None:
        engine().on_external(event.get("type"), _obj(event))

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_STORE, registry=registry,
                   id="external-stores")
    async def on_store_event(event: Any, **_: Any) -> None:
        engine().on_store(api.KIND_STORE, event.get("type"), _obj(event))

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_STORE, registry=registry,
                   id="external-cluster-stores")
    async def on_cluster_store_event(event: Any, **_: Any) -> None:
        engine().on_store(api.KIND_CLUSTER_STORE, event.get("type"), _obj(event))

    @kopf.on.event("", "v1", "secrets", registry=registry, id="external-managed-secrets",
                   labels={api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE})
    async def on_managed_secret_event(event: Any, **_: Any) -> None:
        engine().on_secret(event.get("type"), _obj(event))
