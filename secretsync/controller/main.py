"""`secretsync controller`: flags, settings, logging, signals, HTTP, leader election -- then
the working phase (``operator.operate``: the initial sync, then kopf).

Order matters: connect, serve health/metrics, win the leadership Lease, load (or generate and
persist) the sealing keys and publish the certificate, and only then start the engines.
Losing the Lease stops the operator and exits non-zero so the Deployment restarts the pod as
a standby.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from secretsync import api
from secretsync.cores import usable_cores
from secretsync.errors import SecretSyncError

if TYPE_CHECKING:  # imported at run time inside the functions (start-up order matters)
    from secretsync.controller.leader import LeaderElector
    from secretsync.controller.runtime import Runtime
    from secretsync.controller.settings import Settings

log = logging.getLogger("secretsync.controller")

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


def run(args: argparse.Namespace) -> int:
    from secretsync.controller.settings import from_args
    from secretsync.reconcile.template_limits import set_default_limits

    _setup_logging(args.log_format, args.log_level)
    try:
        settings = from_args(args)  # every flag and SECRETSYNC_* knob, checked once
        set_default_limits(settings.templates)
        return asyncio.run(_main(settings))
    except KeyboardInterrupt:
        return 130
    except SecretSyncError as exc:
        log.error("controller stopped: %s", exc.message)
        return 1


def _workers(settings: Settings) -> int:
    """Decryption threads: one per usable core, plus one. RSA runs without the GIL, but the
    rest of an object's work needs it: a thread back from RSA while the event loop holds the
    GIL waits, and the spare thread keeps that core decrypting meanwhile (1,000 objects:
    ~7.0 s with cores + 1 threads vs ~8.3 s with one per core, bench/bench_unseal.py).
    The cores: the affinity, capped by a cgroup CPU limit (``cores``)."""
    if settings.sealed.workers > 0:
        return int(settings.sealed.workers)
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


async def _serve_http(rt: Runtime, sock: socket.socket) -> Any:
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


async def _main(settings: Settings) -> int:
    """``_run`` under the signal handling of ``_Stopper``: a stop by signal exits 0."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_exception)
    task = asyncio.current_task()
    assert task is not None
    stopper = _Stopper(loop, task)
    stopper.install()
    try:
        return await _run(settings)
    except asyncio.CancelledError:
        if stopper.signum is None:
            raise
        return 0  # _run's finally blocks released the Lease (if held) and stopped the rest


async def _run(settings: Settings) -> int:
    from secretsync.controller.keyring import KeyManager
    from secretsync.controller.leader import LeaderElector
    from secretsync.controller.operator import operate
    from secretsync.controller.runtime import Runtime, use_io_threads

    # before the endpoints' thread imports the reconcile modules
    from secretsync.controller.sealed import SealedEngine, sealed_groups
    from secretsync.kube import Kube

    sock = _bind_http(settings.http_host, settings.http_port) if settings.http_port else None
    try:
        kube = await asyncio.to_thread(Kube.from_config, settings.kubeconfig, settings.context)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    pool = ThreadPoolExecutor(max_workers=_workers(settings), thread_name_prefix="unseal")
    keys = KeyManager(kube, settings.keys)
    rt = Runtime(kube=kube, settings=settings, keys=keys, pool=pool)
    engine = SealedEngine(rt, sealed_groups(settings.sealed.bitnami_compat))
    use_io_threads(settings.io_threads)

    server = None
    if sock is not None:
        server = asyncio.create_task(_serve_http(rt, sock), name="http")
        server.add_done_callback(_http_failed)
    elector: LeaderElector | None = None
    try:
        if settings.leader_elect:
            elector = LeaderElector(kube, settings.controller_namespace, settings.controller_name,
                                    lease_duration=settings.lease_duration)
            follower = asyncio.create_task(keys.follow(), name="standby-keys")
            try:
                await elector.acquire()
            finally:
                follower.cancel()
        rt.is_leader = True
        await keys.start()
        return await operate(settings, rt, engine, elector)
    finally:
        if elector is not None and rt.is_leader:
            await asyncio.to_thread(elector.release)
        await keys.stop()
        await _stop_http(server)
        pool.shutdown(wait=False, cancel_futures=True)
        kube.close()


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
