"""`secretsync controller`: flags, logging, leader election, then kopf.

Order matters: connect, serve health/metrics, win the leadership Lease, load (or generate and
persist) the sealing keys and publish the certificate, and only then start kopf with the
SealedSecret handlers (and the ExternalSecret ones when that module is present). Losing the
Lease stops the operator and exits non-zero so the Deployment restarts the pod as a standby.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from secretsync import api
from secretsync.cores import usable_cores
from secretsync.errors import SecretSyncError

log = logging.getLogger("secretsync.controller")

OPTIONAL_HANDLER_MODULES = ("secretsync.controller.external",)
# the first resync after kopf starts: its watches have listed the objects by then, so a
# Secret deleted between the initial sync's last LIST and kopf's is restored
RESYNC_AFTER_START = 5.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stopper:
    """SIGTERM/SIGINT until kopf installs its own handlers (connecting, waiting for the Lease
    as a standby, loading keys, the initial sync): they cancel the main task, whose
    ``finally`` blocks release the Lease and stop the endpoints, and the exit code is 0.

    Without it a standby -- PID 1 in its container, where a signal without a handler is
    ignored -- only ended with the kubelet's SIGKILL 30 s later; outside a container it died
    of the signal."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop, self.task = loop, task
        self.signum: int | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            self.loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            log.info("stopping (%s)", signal.Signals(signum).name)
            self.task.cancel()


def _duration(text: str) -> float:
    """Seconds from ``720h``, ``30m``, ``45s``, ``1h30m`` or a bare number of seconds."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("empty duration")
    try:
        return float(text)
    except ValueError:
        pass
    total, num = 0.0, ""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in units and num:
            total += float(num) * units[ch]
            num = ""
        else:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 720h, 30m)")
    if num:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: missing unit")
    return total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG") or None,
                        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument("--namespace", default=None,
                        help="watch only this namespace (default: all namespaces)")
    parser.add_argument("--controller-namespace",
                        default=env("SECRETSYNC_NAMESPACE") or api.DEFAULT_CONTROLLER_NAMESPACE,
                        help="namespace holding the keys, cert ConfigMap and Lease")
    parser.add_argument("--controller-name", default=api.DEFAULT_CONTROLLER_NAME,
                        help="name of the cert ConfigMap (<name>-cert) and Lease")
    parser.add_argument("--http-port", type=int, default=8080,
                        help="port for /metrics, /healthz, /readyz, /v1/* (0 disables)")
    parser.add_argument("--http-host", default="",
                        help="address the HTTP server binds (default: every address, IPv4 "
                             "and IPv6 -- a pod's IP may be either)")
    parser.add_argument("--key-renew-period", type=_duration, default=_duration("720h"),
                        help="generate a new sealing key this often (e.g. 720h; 0 disables)")
    parser.add_argument("--key-cutoff-time", default=None,
                        help="RFC 3339 time: generate a new key at start if the newest one "
                             "is older than this (e.g. after a suspected leak)")
    parser.add_argument("--key-prefix", default="secretsync-key-",
                        help="name prefix of generated key Secrets")
    parser.add_argument("--key-bits", type=int, default=4096, help=argparse.SUPPRESS)
    parser.add_argument("--key-poll-interval", type=float, default=10.0,
                        help="seconds between re-reads of the key Secrets (new keys are used "
                             "without a restart)")
    parser.add_argument("--retry-interval", type=_duration, default=_duration("30s"),
                        help="re-try SealedSecrets that failed (e.g. an unmanaged Secret that "
                             "was since handed over) this often")
    parser.add_argument("--resync-interval", type=_duration, default=_duration("10m"),
                        help="compare every managed Secret with its SealedSecret this often "
                             "and restore the ones gone or changed that no watch event "
                             "reported (one LIST; nothing is written when all is in sync; "
                             "0: only once, just after start)")
    parser.add_argument("--bitnami-compat", action="store_true",
                        help="also reconcile bitnami.com/v1alpha1 SealedSecrets")
    parser.add_argument("--import-bitnami-keys", action="store_true",
                        help="also use Secrets labelled "
                             "sealedsecrets.bitnami.com/sealed-secrets-key=active")
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                        help="run only while holding the Lease (default on; two replicas are safe)")
    parser.add_argument("--lease-duration", type=int, default=15, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0,
                        help="decryption threads (default: the usable cores + 1)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="INFO")


def _setup_logging(fmt: str, level: str) -> None:
    from secretsync.controller.logs import configure

    configure(fmt, level)


def _import_kopf_without_kubernetes() -> None:
    """Import kopf without letting it import the ``kubernetes`` client.

    kopf imports ``kubernetes.client`` only to recognise that library's model objects (in
    ``kopf.adopt``/``label`` -- unused here) and, in its default registry, to offer a login
    through it (ours replaces it). That import costs ~31 MiB of RSS and ~0.18 s of start-up;
    our own connections need none of it (``secretsync.kubeconfig``). Marking the package
    absent for the duration makes kopf take its documented no-client path; afterwards
    ``kubernetes`` imports normally again (the kubeconfig fallbacks still use it)."""
    import sys

    if "kopf" in sys.modules or "kubernetes" in sys.modules:
        return
    sys.modules["kubernetes"] = None  # type: ignore[assignment]
    try:
        import kopf  # noqa: F401
    finally:
        if sys.modules.get("kubernetes", 0) is None:
            del sys.modules["kubernetes"]


def run(args: argparse.Namespace) -> int:
    from secretsync.controller.runtime import check_env_knobs

    _setup_logging(args.log_format, args.log_level)
    try:
        check_env_knobs()
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except SecretSyncError as exc:
        log.error("controller stopped: %s", exc.message)
        return 1


def _workers(args: argparse.Namespace) -> int:
    """Decryption threads: one per usable core, plus one. RSA runs without the GIL, but the
    rest of an object's work needs it: a thread back from RSA while the event loop holds the
    GIL waits, and the spare thread keeps that core decrypting meanwhile (1,000 objects:
    ~7.0 s with cores + 1 threads vs ~8.3 s with one per core, bench/bench_unseal.py).
    The cores: the affinity, capped by a cgroup CPU limit (``cores``)."""
    if args.workers > 0:
        return int(args.workers)
    return usable_cores() + 1


def _bind_http(host: str, port: int) -> socket.socket:
    """The HTTP endpoints' listening socket, bound before anything else: a busy port stops
    the start at once with one line. Served once aiohttp is imported (``_serve_http``)."""
    try:
        if not host:  # every address: dual-stack where the kernel has IPv6 (an IPv6-only
            # cluster probes the pod on its IPv6 address), else IPv4 alone
            sock = _bind_every_address(port)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise SecretSyncError(f"cannot serve HTTP on {host or '*'}:{port}: "
                              f"{exc.strerror or exc}",
                              reason="HttpPortUnavailable") from None
    sock.setblocking(False)
    return sock


def _bind_every_address(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        try:
            return socket.create_server(("::", port), family=socket.AF_INET6, backlog=128,
                                        dualstack_ipv6=True)
        except OSError as exc:  # IPv6 switched off in this network namespace
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
    return socket.create_server(("0.0.0.0", port), backlog=128)  # noqa: S104


async def _serve_http(rt: Any, sock: socket.socket) -> Any:
    """Import the endpoints (aiohttp: ~0.1 s of one core) in a thread and serve ``sock``.
    Off the start's critical path: the keys, the SealedSecret LIST and the first RSA
    operations go on meanwhile, so a cold start's decryption begins ~0.1 s sooner."""
    endpoints = await asyncio.to_thread(importlib.import_module,
                                        "secretsync.controller.endpoints")
    return await endpoints.start(rt, sock)


async def _stop_http(server: asyncio.Task[Any] | None) -> None:
    if server is None:
        return
    if not server.done():
        server.cancel()
    await asyncio.wait([server])
    if not server.cancelled() and server.exception() is None:
        await server.result().cleanup()


def _http_failed(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.error("HTTP endpoints not served: %s: %s", type(exc).__name__, exc)


async def _main(args: argparse.Namespace) -> int:
    """``_run`` under the signal handling of ``_Stopper``: a stop by signal exits 0."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_exception)
    task = asyncio.current_task()
    assert task is not None
    stopper = _Stopper(loop, task)
    stopper.install()
    try:
        return await _run(args)
    except asyncio.CancelledError:
        if stopper.signum is None:
            raise
        return 0  # _run's finally blocks released the Lease (if held) and stopped the rest


async def _run(args: argparse.Namespace) -> int:
    from secretsync.controller import sealed  # noqa: F401  (before the endpoints' thread)
    from secretsync.controller.keyring import KeyManager
    from secretsync.controller.leader import LeaderElector
    from secretsync.controller.runtime import Runtime, set_runtime, use_io_threads
    from secretsync.kube import Kube

    sock = _bind_http(args.http_host, args.http_port) if args.http_port else None
    try:
        kube = await asyncio.to_thread(Kube.from_config, args.kubeconfig, args.context)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    pool = ThreadPoolExecutor(max_workers=_workers(args), thread_name_prefix="unseal")
    keys = KeyManager(kube, args)
    rt = Runtime(kube=kube, args=args, keys=keys, pool=pool)
    set_runtime(rt)
    use_io_threads()

    server = None
    if sock is not None:
        server = asyncio.create_task(_serve_http(rt, sock), name="http")
        server.add_done_callback(_http_failed)
    elector: LeaderElector | None = None
    try:
        if args.leader_elect:
            elector = LeaderElector(kube, args.controller_namespace, args.controller_name,
                                    lease_duration=args.lease_duration)
            follower = asyncio.create_task(keys.follow(), name="standby-keys")
            try:
                await elector.acquire()
            finally:
                follower.cancel()
        rt.is_leader = True
        await keys.start()
        return await _operate(args, rt, elector)
    finally:
        if elector is not None and rt.is_leader:
            await asyncio.to_thread(elector.release)
        await keys.stop()
        await _stop_http(server)
        pool.shutdown(wait=False, cancel_futures=True)
        kube.close()
        set_runtime(None)


async def _initial_sync(rt: Any, args: argparse.Namespace, listed: list[dict[str, Any]],
                        keeper: asyncio.Task[Any] | None) -> str:
    """Every listed SealedSecret reconciled before kopf starts (``sealed_start``). Returns
    "synced" to go on, or "lost" when the Lease was lost meanwhile; the sync is cancelled
    then, and when a signal stops the controller (``_Stopper`` cancels this task)."""
    from secretsync.controller.sealed_start import initial_sync

    if not listed:
        return "synced"
    sync = asyncio.create_task(initial_sync(rt, args.namespace, listed), name="initial-sync")
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


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Unhandled errors in background tasks/generators: one line, the exception's type only
    (its text could quote data), never a traceback in the log."""
    exc = context.get("exception")
    message = str(context.get("message", "unhandled error"))
    if isinstance(exc, asyncio.InvalidStateError) and "Signals." in message:
        # kopf's signal handler sets a flag that is only settable once: a second SIGTERM or
        # Ctrl-C while it stops is no error
        log.info("signal received again while stopping")
        return
    log.error("event loop: %s%s", message, f" ({type(exc).__name__})" if exc is not None else "")


def _settings(args: argparse.Namespace) -> Any:
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


def _register(args: argparse.Namespace) -> Any:
    import kopf

    from secretsync.controller.runtime import get_runtime

    # a plain registry: kopf's default one probes for (imports) the kubernetes client to offer
    # its login; we register our own login handler
    kopf.set_default_registry(kopf.OperatorRegistry())
    registry = kopf.get_default_registry()

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> Any:
        conn = get_runtime().kube.connection()
        return kopf.ConnectionInfo(
            server=conn.server,
            ca_path=conn.ca_path,
            insecure=conn.insecure,
            token=conn.token,
            certificate_path=conn.cert_path,
            private_key_path=conn.key_path,
            default_namespace=conn.namespace,
        )

    sealed = importlib.import_module("secretsync.controller.sealed")
    sealed.register(registry, bitnami=bool(args.bitnami_compat))
    for name in OPTIONAL_HANDLER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                log.error("handlers of %s disabled: missing module %s", name, exc.name)
        except Exception as exc:  # keep unsealing even if another engine cannot load
            log.error("handlers of %s disabled: %s: %s", name, type(exc).__name__, exc)
    return registry


async def _operate(args: argparse.Namespace, rt: Any, elector: Any) -> int:
    from secretsync.controller import resync, sealed, sealed_start

    rt.resyncers.append(sealed_start.restore)

    # The decryption starts at once (sealed_start.prefetch) and every listed object is
    # reconciled (sealed_start.initial_sync) before kopf is even imported: its import and
    # start-up hold the event loop for ~0.3 s of CPU that the first Secrets need more.
    early = asyncio.get_running_loop().run_in_executor(
        rt.pool, sealed_start.prefetch, rt, args.namespace,
        sealed.sealed_groups(bool(args.bitnami_compat)))
    _tune_gc()
    await asyncio.to_thread(sealed_start.seed_index, rt, args.namespace)
    listed = await early
    log.debug("prefetch: %d SealedSecrets queued", len(listed))
    ready = asyncio.Event()
    namespaces = [args.namespace] if args.namespace else []
    from secretsync.controller.sealed import background_workers, requeue_failed

    # Our long-running tasks are created before kopf's: kopf treats every task spawned after
    # its start as its own and waits for (then cancels) them on shutdown.
    async def _mark_ready() -> None:
        await ready.wait()
        rt.operator_ready = True
        log.info("controller ready (namespaces: %s)", args.namespace or "all")

    background = [
        asyncio.create_task(_mark_ready(), name="ready"),
        asyncio.create_task(rt.keys.run_background(), name="keys"),
        asyncio.create_task(requeue_failed(float(args.retry_interval)), name="requeue"),
        asyncio.create_task(background_workers(), name="background"),
        asyncio.create_task(resync.resync_loop(
            rt, args.namespace, ready, RESYNC_AFTER_START, float(args.resync_interval)),
            name="resync"),
    ]
    keeper = asyncio.create_task(elector.keep(), name="lease") if elector else None
    operator: asyncio.Task[Any] | None = None
    try:
        lost = await _initial_sync(rt, args, listed, keeper) == "lost"
        if not lost:
            operator = _start_operator(args, ready, namespaces)
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


def _start_operator(args: argparse.Namespace, ready: asyncio.Event,
                    namespaces: list[str]) -> asyncio.Task[Any]:
    """Import kopf (only now: see ``_operate``), register the handlers, start the operator."""
    _import_kopf_without_kubernetes()
    import kopf

    from secretsync.controller.leader import default_identity

    registry = _register(args)
    _tune_gc()
    return asyncio.create_task(kopf.operator(
        registry=registry,
        settings=_settings(args),
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
