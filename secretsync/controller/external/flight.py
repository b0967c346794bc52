"""Single-flight for backend reads: one call per (store, fetch) within a short window.

ExternalSecrets reading the same key from the same store at about the same time (their
refresh phases are aligned for exactly this, see ``reconcile.external_schedule``) share one
backend call: concurrent callers await the same task, and callers arriving within ``window``
seconds after it finished reuse its result. Results live only in memory and only for the
window (never longer than half of the requester's refresh interval), errors included — so a
failing key is not hammered by every ExternalSecret that reads it either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class SingleFlight:
    """``window < 0`` disables sharing entirely (every caller makes its own call)."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._inflight: dict[Hashable, asyncio.Task[Any]] = {}
        self._done: dict[Hashable, tuple[float, Any, BaseException | None]] = {}
        self.calls = 0  # backend calls actually made
        self.shared = 0  # requests served by another caller's call

    def _prune(self, now: float) -> None:
        if len(self._done) < 256:
            return
        for k in [k for k, (t, _, _) in self._done.items() if now - t > self.window]:
            del self._done[k]

    async def do(
        self, key: Hashable, fn: Callable[[], Awaitable[Any]], *, max_age: float | None = None
    ) -> Any:
        """Result of ``fn()`` for ``key``, shared with concurrent / recent callers.
        ``max_age`` bounds how old a reused result may be (default: the window)."""
        if self.window < 0:  # sharing disabled (the benchmark's naive baseline)
            self.calls += 1
            return await fn()
        now = time.monotonic()
        age_limit = self.window if max_age is None else min(self.window, max_age)
        done = self._done.get(key)
        if done is not None and now - done[0] <= age_limit:
            self.shared += 1
            if done[2] is not None:
                raise done[2]
            return done[1]
        task = self._inflight.get(key)
        if task is None:
            self.calls += 1
            task = asyncio.ensure_future(self._run(key, fn))
            # retrieve the exception even if every waiter was cancelled
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight[key] = task
        else:
            self.shared += 1
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            result = await fn()
        except Exception as exc:
            self._done[key] = (time.monotonic(), None, exc)
            raise
        else:
            self._done[key] = (time.monotonic(), result, None)
            return result
        finally:
            self._inflight.pop(key, None)
            self._prune(time.monotonic())

    def forget(self, prefix: Hashable) -> None:
        """Drop cached results whose key starts with ``prefix`` (a store's key): used when a
        store changes or a force-sync asks for fresh values."""
        for k in [k for k in self._done if isinstance(k, tuple) and k and k[0] == prefix]:
            del self._done[k]
