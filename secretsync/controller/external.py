"""kopf handlers for ExternalSecrets, SecretStores, ClusterSecretStores and the Secrets they
manage. Thin on purpose: each handler hands the raw event to the engine
(``external_engine.Engine``), which owns scheduling, fetching and writing.

Only event handlers are used (no kopf timers, daemons or change handlers), so kopf never adds
a finalizer, a progress annotation or a diff-base copy to our objects.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from secretsync import api
from secretsync.controller import external_hashkey
from secretsync.controller.external_engine import Engine
from secretsync.controller.runtime import (
    external_workers,
    fetch_window,
    get_runtime,
)
from secretsync.errors import KubeError, KubeForbidden, SecretSyncError

log = logging.getLogger("secretsync.external")

_KEY = "external-engine"


def engine() -> Engine:
    eng = get_runtime().extra.get(_KEY)
    if not isinstance(eng, Engine):
        raise RuntimeError("ExternalSecret engine not started")
    return eng


def _obj(event: Any) -> dict[str, Any]:
    obj = event.get("object")
    return obj if isinstance(obj, dict) else dict(obj or {})


@kopf.on.startup()
async def start_external(**_: Any) -> None:
    rt = get_runtime()
    workers = int(getattr(rt.args, "external_workers", 0) or external_workers())
    window = fetch_window()
    # The data-hash key, once per process, before any hash is computed or compared.
    try:
        hash_key = await external_hashkey.load_or_create(
            rt.kube, rt.args.controller_namespace, rt.args.controller_name
        )
    except KubeError as exc:
        if isinstance(exc, KubeForbidden):
            raise kopf.PermanentError(f"data-hash key: {exc.message}") from None
        log.warning("data-hash key not loaded (%s); retrying", exc.message)
        raise kopf.TemporaryError(f"data-hash key: {exc.message}", delay=5) from None
    except SecretSyncError as exc:
        log.error("ExternalSecret engine not started: %s", exc.message)
        raise kopf.PermanentError(exc.message) from None
    eng = Engine(rt.kube, hash_key=hash_key, workers=workers, window=window)
    eng.start()
    rt.extra[_KEY] = eng
    rt.resyncers.append(eng.resync)
    log.info("ExternalSecret engine started (%d workers)", workers)


@kopf.on.cleanup()
async def stop_external(**_: Any) -> None:
    rt = get_runtime()
    eng = rt.extra.pop(_KEY, None)
    if isinstance(eng, Engine):
        if eng.resync in rt.resyncers:
            rt.resyncers.remove(eng.resync)
        await eng.stop()


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL)
async def on_external_event(event: Any, **_: Any) -> None:
    engine().on_external(event.get("type"), _obj(event))


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_STORE)
async def on_store_event(event: Any, **_: Any) -> None:
    engine().on_store(api.KIND_STORE, event.get("type"), _obj(event))


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_STORE)
async def on_cluster_store_event(event: Any, **_: Any) -> None:
    engine().on_store(api.KIND_CLUSTER_STORE, event.get("type"), _obj(event))


@kopf.on.event(
    "",
    "v1",
    "secrets",
    labels={api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE},
)
async def on_managed_secret_event(event: Any, **_: Any) -> None:
    engine().on_secret(event.get("type"), _obj(event))
