"""What the kopf handlers share at run time: the API client, the flags, the thread pool.

Handlers are module-level functions (kopf's style), so the objects they need are set here once
by ``main.run`` before the operator starts, instead of being passed through kopf's memo.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from secretsync.errors import InvalidInput
from secretsync.reconcile.template_limits import Limits, set_default_limits

if TYPE_CHECKING:
    from secretsync.controller.keyring import KeyManager
    from secretsync.kube import Kube

T = TypeVar("T")


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


def io_threads() -> int:
    """Threads of the event loop's default executor (``asyncio.to_thread``: every API and
    backend call); the default is at least ``controller.burst.SIZE``, so that a group of
    Secret writes goes out at once."""
    return int(env_knob("SECRETSYNC_IO_THREADS", 64, minimum=1))


def external_workers() -> int:
    """ExternalSecret syncs run at once."""
    return int(env_knob("SECRETSYNC_EXTERNAL_WORKERS", 16, minimum=1))


def fetch_window() -> float:
    """Seconds a backend read is shared by the syncs that need it (-1: not shared)."""
    return env_knob("SECRETSYNC_FETCH_WINDOW", 30, minimum=-1, integer=False)


def template_limits() -> Limits:
    """The bounds of every template render (``reconcile.template_limits``): the size of one
    rendered Secret (and of any value made on the way) and the render deadline."""
    return Limits(
        max_bytes=int(env_knob("SECRETSYNC_TEMPLATE_MAX_BYTES", 1 << 20, minimum=1024)),
        timeout=env_knob("SECRETSYNC_TEMPLATE_TIMEOUT", 2.0, minimum=0.01, integer=False),
    )


def check_env_knobs() -> None:
    """Every knob read at once at start-up, so a bad one stops the start, not a later phase;
    the template bounds are applied here, once, for the whole process."""
    io_threads()
    external_workers()
    fetch_window()
    set_default_limits(template_limits())


Resyncer = Callable[[Mapping[tuple[str, str], dict[str, Any]]], Awaitable[int]]


@dataclass
class Runtime:
    kube: Kube
    args: argparse.Namespace
    keys: KeyManager
    pool: ThreadPoolExecutor
    # objects whose last reconcile failed for a reason a new key could fix: retried on key change
    retry_on_new_key: set[tuple[str, str, str]] = field(default_factory=set)
    is_leader: bool = False
    operator_ready: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # engines that compare the managed Secrets, as one LIST shows them, with what they expect
    # and repair the difference (``controller.resync``); each returns how many it repaired
    resyncers: list[Resyncer] = field(default_factory=list)


_RUNTIME: Runtime | None = None


def set_runtime(rt: Runtime | None) -> None:
    global _RUNTIME
    _RUNTIME = rt


def get_runtime() -> Runtime:
    if _RUNTIME is None:
        raise RuntimeError("the controller runtime is not initialised (call main.run)")
    return _RUNTIME


def use_io_threads() -> None:
    """Give the running loop a default executor of ``io_threads()`` threads (the standard one
    has cores + 4), before any engine starts. Threads are started on demand, not up front;
    ``asyncio.run`` shuts the executor down at the end."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=io_threads(), thread_name_prefix="io"))


async def kube_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a sync ``Kube`` method off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def cpu_call(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound work (RSA) on the shared pool sized to the cores."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(get_runtime().pool, fn, *args)
