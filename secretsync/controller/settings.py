"""The controller's settings: one typed tree, built once at start from the flags and the
``SECRETSYNC_*`` environment knobs, validated there, and handed to the parts that need them.

Why: settings used to travel as an ``argparse.Namespace`` read with ``getattr`` wherever they
were needed, plus knob functions read again at use. A typo or a bad value then surfaced in
some later phase. Here every value is read and checked once (a bad one stops the start with
one line naming it), and each engine receives only its own branch of the tree.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
from dataclasses import dataclass, field

from secretsync import api, clock
from secretsync.errors import InvalidInput, SecretSyncError
from secretsync.reconcile.template_limits import Limits


def env_knob(name: str, default: float, *, minimum: float, integer: bool = True) -> float:
    """An environment knob of the controller (``SECRETSYNC_*``): its number, or ``default``
    when unset; a value that is not a number, or below ``minimum``, raises ``InvalidInput``
    naming the variable (the controller stops with that one line, not a traceback)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "a whole number" if integer else "a number"
        raise InvalidInput(f"environment variable {name}={raw[:40]!r} is not {kind} "
                           f">= {minimum:g}")
    return value


def parse_cutoff(text: str | None) -> _dt.datetime | None:
    """``--key-cutoff-time``: an RFC 3339 time (UTC when it names no zone), or None."""
    if not text:
        return None
    when = clock.parse(text)
    if when is None:
        raise SecretSyncError(
            f"--key-cutoff-time {text!r} is not an RFC 3339 time", reason="InvalidFlag")
    return when if when.tzinfo else when.replace(tzinfo=_dt.UTC)


@dataclass(frozen=True)
class KeySettings:
    """The sealing keys (``keyring.KeyManager``)."""

    namespace: str = api.DEFAULT_CONTROLLER_NAMESPACE
    """Namespace of the key Secrets, the certificate ConfigMap and the Lease."""
    name: str = api.DEFAULT_CONTROLLER_NAME
    """The controller's name: ConfigMap ``<name>-cert``, Lease ``<name>``."""
    renew_period: float = 720 * 3600.0
    """Seconds between new keys (0: never)."""
    cutoff: _dt.datetime | None = None
    """A new key at start when the newest is older than this."""
    prefix: str = "secretsync-key-"
    """Name prefix of generated key Secrets."""
    bits: int = 4096
    poll_interval: float = 10.0
    """Seconds between re-reads of the key Secrets."""
    import_bitnami: bool = False
    """Also use Bitnami's active key Secrets."""


@dataclass(frozen=True)
class SealedSettings:
    """The SealedSecret engine."""

    bitnami_compat: bool = False
    """Also reconcile ``bitnami.com/v1alpha1`` SealedSecrets."""
    workers: int = 0
    """Decryption threads (0: the usable cores + 1)."""
    retry_interval: float = 30.0
    """Seconds between re-tries of failed objects."""
    resync_interval: float = 600.0
    """Seconds between resyncs of the managed Secrets (0: once, after start)."""


@dataclass(frozen=True)
class ExternalSettings:
    """The ExternalSecret engine."""

    workers: int = 16
    """Syncs run at once (``SECRETSYNC_EXTERNAL_WORKERS``)."""
    fetch_window: float = 30.0
    """Seconds a backend read is shared by the syncs that need it (-1: not shared;
    ``SECRETSYNC_FETCH_WINDOW``)."""


@dataclass(frozen=True)
class Settings:
    """Everything the controller is told, at start."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    """Watch only this namespace (None: all)."""
    http_host: str = ""
    http_port: int = 8080
    leader_elect: bool = True
    lease_duration: int = 15
    log_format: str = "text"
    log_level: str = "INFO"
    io_threads: int = 64
    """Threads of the event loop's default executor (``SECRETSYNC_IO_THREADS``)."""
    keys: KeySettings = field(default_factory=KeySettings)
    sealed: SealedSettings = field(default_factory=SealedSettings)
    external: ExternalSettings = field(default_factory=ExternalSettings)
    templates: Limits = field(default_factory=Limits)
    """Render bounds (``SECRETSYNC_TEMPLATE_MAX_BYTES``, ``SECRETSYNC_TEMPLATE_TIMEOUT``)."""

    @property
    def controller_namespace(self) -> str:
        return self.keys.namespace

    @property
    def controller_name(self) -> str:
        return self.keys.name


def template_limits() -> Limits:
    return Limits(
        max_bytes=int(env_knob("SECRETSYNC_TEMPLATE_MAX_BYTES", 1 << 20, minimum=1024)),
        timeout=env_knob("SECRETSYNC_TEMPLATE_TIMEOUT", 2.0, minimum=0.01, integer=False),
    )


def from_args(args: argparse.Namespace) -> Settings:
    """The settings of ``secretsync controller`` (its parsed flags) and the environment;
    raises ``InvalidInput`` / ``SecretSyncError`` naming the first bad value."""
    return Settings(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        http_host=args.http_host,
        http_port=args.http_port,
        leader_elect=args.leader_elect,
        lease_duration=args.lease_duration,
        log_format=args.log_format,
        log_level=args.log_level,
        io_threads=int(env_knob("SECRETSYNC_IO_THREADS", 64, minimum=1)),
        keys=KeySettings(
            namespace=args.controller_namespace,
            name=args.controller_name,
            renew_period=float(args.key_renew_period),
            cutoff=parse_cutoff(args.key_cutoff_time),
            prefix=args.key_prefix,
            bits=args.key_bits,
            poll_interval=float(args.key_poll_interval),
            import_bitnami=bool(args.import_bitnami_keys),
        ),
        sealed=SealedSettings(
            bitnami_compat=bool(args.bitnami_compat),
            workers=args.workers,
            retry_interval=float(args.retry_interval),
            resync_interval=float(args.resync_interval),
        ),
        external=ExternalSettings(
            workers=int(env_knob("SECRETSYNC_EXTERNAL_WORKERS", 16, minimum=1)),
            fetch_window=env_knob("SECRETSYNC_FETCH_WINDOW", 30, minimum=-1, integer=False),
        ),
        templates=template_limits(),
    )
