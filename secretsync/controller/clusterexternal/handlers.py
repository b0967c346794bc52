"""kopf handlers for ClusterExternalSecrets, registered explicitly on a registry
(``register``): ClusterExternalSecrets, Namespaces (labels decide the targets) and
ExternalSecrets (a second handler on the ExternalSecret engine's watch: one stream, two
handlers). Thin on purpose: each hands the event to ``engine.ClusterExternalEngine``.

The engine is built in kopf's startup handler, which lists Namespaces and ExternalSecrets
before kopf starts watching (kopf runs startup handlers first).
"""

from __future__ import annotations

import logging
from typing import Any

from secretsync import api
from secretsync.controller.clusterexternal.engine import ClusterExternalEngine
from secretsync.controller.runtime import Runtime
from secretsync.errors import KubeError, KubeForbidden

log = logging.getLogger("secretsync.clusterexternal")


def _obj(event: Any) -> dict[str, Any]:
    obj = event.get("object")
    return obj if isinstance(obj, dict) else dict(obj or {})


def register(rt: Runtime, registry: Any) -> None:
    """The ClusterExternalSecret engine's handlers on ``registry``."""
    import kopf

    running: list[ClusterExternalEngine] = []

    def engine() -> ClusterExternalEngine:
        if not running:
            raise RuntimeError("ClusterExternalSecret engine not started")
        return running[0]

    @kopf.on.startup(registry=registry, id="cluster-external-start")
    async def start_cluster_external(**_: Any) -> None:
        eng = ClusterExternalEngine(rt.kube, scope=rt.settings.namespace)
        try:
            await eng.seed()
        except KubeError as exc:
            if isinstance(exc, KubeForbidden):
                raise kopf.PermanentError(f"ClusterExternalSecret engine: {exc.message}") from None
            log.warning("ClusterExternalSecret engine not seeded (%s); retrying", exc.message)
            raise kopf.TemporaryError(exc.message, delay=5) from None
        eng.start()
        running.append(eng)
        log.info("ClusterExternalSecret engine started")

    @kopf.on.cleanup(registry=registry, id="cluster-external-stop")
    async def stop_cluster_external(**_: Any) -> None:
        while running:
            await running.pop().stop()

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_EXTERNAL, registry=registry,
                   id="cluster-external-secrets")
    async def on_cluster_external_event(event: Any, **_: Any) -> None:
        engine().on_cluster_external(event.get("type"), _obj(event))

    @kopf.on.event("", "v1", "namespaces", registry=registry, id="cluster-external-namespaces")
    async def on_namespace_event(event: Any, **_: Any) -> None:
        engine().on_namespace(event.get("type"), _obj(event))

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, registry=registry,
                   id="cluster-external-owned")
    async def on_external_event(event: Any, **_: Any) -> None:
        engine().on_external(event.get("type"), _obj(event))
