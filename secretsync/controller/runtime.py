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

if TYPE_CHECKING:
    from secretsync.controller.keyring import KeyManager
    from secretsync.kube import Kube

T = TypeVar("T")
# threads of the event loop's default executor (asyncio.to_thread: every API and backend call);
# at least controller.burst.SIZE, so that a group of Secret writes goes out at once
IO_THREADS = int(os.environ.get("SECRETSYNC_IO_THREADS", "64"))
Resyncer = Callable[[Mapping[tuple[str, str], dict[str, Any]]], Awaitable[int]]


@dataclass
class Runtime:
    kube: Kube
    args: argparse.Namespace
    keys: KeyManager
    pool: ThreadPoolExecutor
    io: ThreadPoolExecutor | None = None  # the loop's default executor, once ``use_io_threads``
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


def use_io_threads(rt: Runtime) -> None:
    """Give the running loop a default executor of ``IO_THREADS`` threads, once (the
    standard one has cores + 4). Threads are started on demand, not up front."""
    if rt.io is None:
        rt.io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="io")
        asyncio.get_running_loop().set_default_executor(rt.io)


async def kube_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a sync ``Kube`` method off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def cpu_call(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound work (RSA) on the shared pool sized to the cores."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(get_runtime().pool, fn, *args)
