"""What the engines share at run time: the API client, the settings, the keys, the thread
pool -- built once by ``main.run`` and handed to each engine, which registers its kopf
handlers as closures over itself (no module-level state).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from secretsync.controller.settings import Settings

if TYPE_CHECKING:
    from secretsync.controller.keyring import KeyManager
    from secretsync.kube import Kube

T = TypeVar("T")

Resyncer = Callable[[Mapping[tuple[str, str], dict[str, Any]]], Awaitable[int]]


@dataclass
class Runtime:
    kube: Kube
    settings: Settings
    keys: KeyManager
    pool: ThreadPoolExecutor
    is_leader: bool = False
    operator_ready: bool = False
    # engines that compare the managed Secrets, as one LIST shows them, with what they expect
    # and repair the difference (``controller.resync``); each returns how many it repaired
    resyncers: list[Resyncer] = field(default_factory=list)


def use_io_threads(threads: int) -> None:
    """Give the running loop a default executor of ``threads`` threads (the standard one has
    cores + 4), before any engine starts; the default (``Settings.io_threads``) is at least
    ``controller.sealed.burst.SIZE``, so that a group of Secret writes goes out at once.
    Threads are started on demand, not up front; ``asyncio.run`` shuts the executor down at
    the end."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="io"))


async def kube_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a sync ``Kube`` method off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)
