"""The controller's working phase, once it leads and its keys are loaded: the SealedSecret
engine's cold start, the background tasks, then kopf with every engine's handlers -- until a
signal, or the loss of the Lease.

Apart from ``main`` (flags, signals, HTTP, the Lease) because this is the half that knows kopf:
its import is deferred until after the initial sync (see ``operate``), and its settings and
registry are built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from secretsync import api

if TYPE_CHECKING:
    from secretsync.controller.leader import LeaderElector
    from secretsync.controller.runtime import Runtime
    from secretsync.controller.sealed import SealedEngine
    from secretsync.controller.settings import Settings

log = logging.getLogger("secretsync.controller")

# the first resync after kopf starts: its watches have listed the objects by then, so a
# Secret deleted between the initial sync's last LIST and kopf's is restored
RESYNC_AFTER_START = 5.0


def _import_kopf_without_kubernetes() -> None:
    """Import kopf without letting it import the ``kubernetes`` client.

    kopf imports ``kubernetes.client`` only to recognise that library's model objects (in
    ``kopf.adopt``/``label`` -- unused here) and, in its default registry, to offer a login
    through it (ours replaces it). That import costs ~31 MiB of RSS and ~0.18 s of start-up;
    our own connections need none of it (``secretsync.kube.config``). Marking the package
    absent for the duration makes kopf take its documented no-client path; afterwards
    ``kubernetes`` imports normally again (the kubeconfig fallbacks still use it)."""

    if "kopf" in sys.modules or "kubernetes" in sys.modules:
        return
    sys.modules["kubernetes"] = None  # type: ignore[assignment]
    try:
        import kopf  # noqa: F401
    finally:
        if sys.modules.get("kubernetes", 0) is None:
            del sys.modules["kubernetes"]


async def _initial_sync(engine: SealedEngine, settings: Settings,
                        listed: list[dict[str, Any]], keeper: asyncio.Task[Any] | None) -> str:
    """Every listed SealedSecret reconciled before kopf starts (``sealed.start``). Returns
    "synced" to go on, or "lost" when the Lease was lost meanwhile; the sync is cancelled
    then, and when a signal stops the controller (``_Stopper`` cancels this task)."""
    from secretsync.controller.sealed.start import initial_sync

    if not listed:
        return "synced"
    sync = asyncio.create_task(initial_sync(engine, settings.namespace, listed),
                               name="initial-sync")
    waiters: set[asyncio.Future[Any]] = {sync}
    if keeper is not None:
        waiters.add(keeper)
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        log.info("stopped during the initial sync")
        raise
    finally:
        if not sync.done():
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
    if sync in done:
        if not sync.cancelled() and sync.exception() is not None:  # a bug: kopf catches up
            log.error("initial sync failed: %s", type(sync.exception()).__name__)
        return "synced"
    return "lost"


def _tune_gc() -> None:
    """After the imports (and again after kopf's): the objects that exist now (modules,
    classes, kopf's registry) live as long as the process, so they are moved out of the
    cyclic collector's sight (``gc.freeze``), and it runs after 20,000 new container objects
    instead of 700.
    A cold start allocates millions of short-lived dicts (bodies, patches, JSON); with
    Python's defaults each of its ~4 full collections walked every imported object again:
    0.22 of 0.33 core-seconds of GC per 1,000 SealedSecrets, on the cores the RSA work
    needs. Now ~0.07 (no full collection). Cycles are still collected, a little later."""
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _no_diffbase() -> Any:
    """kopf deep-copies every object on every event to diff it against a stored copy; only
    change handlers (on.create/update/...) use that diff and we register none (event handlers
    only, in both engines). Skipping it saves ~1 ms per event and never stores a copy."""
    import kopf

    class NoDiffBase(kopf.DiffBaseStorage):
        def build(self, *, body: Any, extra_fields: Any = None) -> Any:
            return {}

        def fetch(self, *, body: Any) -> Any:
            return None

        def store(self, *, body: Any, patch: Any, essence: Any) -> None:
            return None

    return NoDiffBase()


def _kopf_settings() -> Any:
    import kopf

    settings = kopf.OperatorSettings()
    # We post our own Events (with messages we know hold no values); kopf's per-log-line
    # events would duplicate them.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # Only event handlers are used, so kopf never writes progress or a diff-base copy of the
    # object (which for a Secret would be its data) -- keep that guaranteed anyway:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.secretsync.io")
    settings.persistence.diffbase_storage = _no_diffbase()
    # Server-side filter: the Secret watch only ever sees Secrets we manage.
    settings.watching.label_selectors["v1", "secrets"] = api.MANAGED_SELECTOR
    # a clean stop takes well under a second; pending retries may hold kopf up to 5 s
    settings.process.ultimate_exiting_timeout = 15
    return settings


def _register(rt: Runtime, engine: SealedEngine) -> Any:
    import kopf

    # a plain registry: kopf's default one probes for (imports) the kubernetes client to offer
    # its login; we register our own login handler
    kopf.set_default_registry(kopf.OperatorRegistry())
    registry = kopf.get_default_registry()

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> Any:
        conn = rt.kube.connection()
        return kopf.ConnectionInfo(
            server=conn.server,
            ca_path=conn.ca_path,
            insecure=conn.insecure,
            token=conn.token,
            certificate_path=conn.cert_path,
            private_key_path=conn.key_path,
            default_namespace=conn.namespace,
        )

    from secretsync.controller.sealed import handlers as sealed_handlers

    sealed_handlers.register(engine, registry)
    try:  # keep unsealing even if the ExternalSecret engine cannot load
        from secretsync.controller.external import handlers as external_handlers

        external_handlers.register(rt, registry)
        # ClusterExternalSecrets only make ExternalSecrets: on and off with that engine
        from secretsync.controller.clusterexternal import handlers as cluster_external_handlers

        cluster_external_handlers.register(rt, registry)
    except Exception as exc:
        log.error("ExternalSecret handlers disabled: %s: %s", type(exc).__name__, exc)
    return registry


async def operate(settings: Settings, rt: Runtime, engine: SealedEngine,
                   elector: LeaderElector | None) -> int:
    from functools import partial

    from secretsync.controller import resync
    from secretsync.controller.sealed import start as sealed_start

    rt.resyncers.append(partial(sealed_start.restore, engine))

    # The decryption starts at once (sealed_start.prefetch) and every listed object is
    # reconciled (sealed_start.initial_sync) before kopf is even imported: its import and
    # start-up hold the event loop for ~0.3 s of CPU that the first Secrets need more.
    early = asyncio.get_running_loop().run_in_executor(
        rt.pool, sealed_start.prefetch, engine, settings.namespace)
    _tune_gc()
    await asyncio.to_thread(sealed_start.seed_index, engine, settings.namespace)
    listed = await early
    log.debug("prefetch: %d SealedSecrets queued", len(listed))
    ready = asyncio.Event()
    namespaces = [settings.namespace] if settings.namespace else []
    # Our long-running tasks are created before kopf's: kopf treats every task spawned after
    # its start as its own and waits for (then cancels) them on shutdown.
    async def _mark_ready() -> None:
        await ready.wait()
        rt.operator_ready = True
        log.info("controller ready (namespaces: %s)", settings.namespace or "all")

    background = [
        asyncio.create_task(_mark_ready(), name="ready"),
        asyncio.create_task(rt.keys.run_background(), name="keys"),
        asyncio.create_task(engine.requeue_failed(settings.sealed.retry_interval),
                            name="requeue"),
        asyncio.create_task(engine.background_workers(), name="background"),
        asyncio.create_task(resync.resync_loop(
            rt, settings.namespace, ready, RESYNC_AFTER_START, settings.sealed.resync_interval),
            name="resync"),
    ]
    keeper = asyncio.create_task(elector.keep(), name="lease") if elector else None
    operator: asyncio.Task[Any] | None = None
    try:
        lost = await _initial_sync(engine, settings, listed, keeper) == "lost"
        if not lost:
            operator = _start_operator(settings, rt, engine, ready, namespaces)
            waiters: set[asyncio.Task[Any]] = {operator}
            if keeper is not None:
                waiters.add(keeper)
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            lost = keeper is not None and keeper in done
    finally:  # also on a stop by signal: no renewal of the Lease after its release
        for task in background:
            task.cancel()
        if keeper is not None:
            keeper.cancel()
    if lost:
        rt.is_leader = False
        if operator is not None:
            operator.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(operator, timeout=10)
        log.error("lost leadership; exiting so the pod restarts as a standby")
        return 1
    assert operator is not None
    exc = None if operator.cancelled() else operator.exception()
    if exc is not None:
        log.error("operator stopped: %s", type(exc).__name__)
        return 1
    return 0


def _start_operator(settings: Settings, rt: Runtime, engine: SealedEngine,
                    ready: asyncio.Event, namespaces: list[str]) -> asyncio.Task[Any]:
    """Import kopf (only now: see ``operate``), register the handlers, start the operator."""
    _import_kopf_without_kubernetes()
    import kopf

    from secretsync.controller.leader import default_identity

    registry = _register(rt, engine)
    _tune_gc()
    return asyncio.create_task(kopf.operator(
        registry=registry,
        settings=_kopf_settings(),
        standalone=True,
        # kopf names itself after the login user otherwise (getpass): a pod running as a
        # UID without a passwd entry -- the Dockerfile's USER 65532 -- stopped it with a
        # KeyError before it watched anything
        identity=default_identity(),  # type: ignore[arg-type]  # kopf's NewType of str
        clusterwide=not namespaces,
        namespaces=namespaces,
        # no stop_flag: kopf leaves its waiter for it hanging after a signal (a 5 s stop);
        # on lost leadership the operator task is cancelled instead.
        ready_flag=ready,
    ), name="kopf")
