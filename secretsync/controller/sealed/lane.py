"""The bookkeeping lane: SealedSecret status patches and Events, written after the Secrets.

Why a lane: a workload waits for its Secret, not for the SealedSecret's status or an Event,
and on a cold start with a backlog (a controller restart, a switch-over from Bitnami's
controller) those two writes cost the API server more than the Secret itself (a status patch
on a custom resource ~2.5 ms of API-server CPU, an Event ~1.3 ms, a Secret create ~1 ms,
measured by ``bench/bench_unseal.py``). So while SealedSecrets are being reconciled the lane
holds their status and Events back, and writes them as soon as the backlog is done -- or
after ``MAX_DEFER`` seconds, so that a never-ending stream of changes cannot starve them. With
no backlog (the steady state: one object changes) it writes at once.

Per object only the newest status is kept (a newer reconcile replaces a pending one), and a
status is written under the object's lock, so an older status can never overwrite a newer
one. Events are kept in order and posted after their object's status; an Event identical to
the last one pending for the object is not queued again (a failing object retried before its
status was written would otherwise post its warning twice). Nothing here holds a
decrypted value: statuses and Event messages are built from names and reasons only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from secretsync.errors import KubeError, KubeNotFound
from secretsync.kube import Kube

log = logging.getLogger("secretsync.sealed")

MAX_DEFER = 10.0  # seconds a status may wait for the backlog to clear
WRITERS = 4  # status/Event writes in flight at once

Ref = tuple[str, str, str]  # (apiVersion, namespace, name)
EventSpec = tuple[str, str, bool]  # (reason, message, warning)


@dataclass
class _Entry:
    obj: Mapping[str, Any]
    status: dict[str, Any] | None
    events: list[EventSpec] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)


class Lane:
    """Pending status patches and Events, keyed by object; see the module docstring."""

    def __init__(self, lock_for: Callable[[str, str], asyncio.Lock],
                 on_error: Callable[[Ref], None]) -> None:
        self._lock_for = lock_for
        self._on_error = on_error  # an API error: reconcile the object again later
        self._pending: dict[Ref, _Entry] = {}
        self._has_work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0

    # -- the backlog: decryptions and Secret writes in flight -----------------------------

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Around the work the lane must not compete with (decryption, a Secret write);
        a reconcile that finds nothing to do does not count."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy <= 0:
                self._busy = 0
                self._idle.set()

    # -- queueing ------------------------------------------------------------------------

    def put(self, ref: Ref, obj: Mapping[str, Any], status: dict[str, Any] | None,
            event: EventSpec | None = None) -> None:
        """Queue ``status`` (None: leave the status alone) and ``event`` for ``ref``."""
        if status is None and event is None:
            return
        entry = self._pending.get(ref)
        if entry is None:
            entry = self._pending[ref] = _Entry(obj, status)
        else:  # keep the place in line and the age; the newer status wins
            entry.obj = obj
            if status is not None:
                entry.status = status
        if event is not None and (not entry.events or entry.events[-1] != event):
            entry.events.append(event)  # the same Event twice in a row is one (a retry)
        self._has_work.set()

    def forget(self, ref: Ref) -> None:
        """The object is gone: nothing to write for it."""
        self._pending.pop(ref, None)

    def pending(self) -> int:
        return len(self._pending)

    # -- writing -------------------------------------------------------------------------

    async def _next(self) -> tuple[Ref, _Entry]:
        """The oldest entry, taken out of the queue, once the backlog allows it."""
        while True:
            await self._has_work.wait()
            if not self._pending:
                self._has_work.clear()
                continue
            oldest = next(iter(self._pending.values())).since
            wait = oldest + MAX_DEFER - time.monotonic()
            if wait > 0 and not self._idle.is_set():
                try:
                    await asyncio.wait_for(self._idle.wait(), timeout=wait)
                except TimeoutError:
                    pass
                continue  # look again: the first entry may have been written meanwhile
            ref = next(iter(self._pending))
            return ref, self._pending.pop(ref)

    def writers(self, kube: Kube,
                write_status: Callable[[Kube, Mapping[str, Any], dict[str, Any]], None],
                post_event: Callable[[Kube, Mapping[str, Any], EventSpec], None],
                n: int = WRITERS) -> list[Coroutine[Any, Any, None]]:
        """``n`` coroutines that write pending entries forever. Returned, not gathered here,
        so that the caller's single gather creates every task at once (kopf waits at shutdown
        for tasks created after its own start)."""

        def write(entry: _Entry) -> None:  # in a worker thread
            if entry.status is not None:
                write_status(kube, entry.obj, entry.status)
            for spec in entry.events:  # never raises: an Event is not worth a retry
                post_event(kube, entry.obj, spec)

        async def writer() -> None:
            while True:
                # taken out and queued on the object's (FIFO) lock with no await in between:
                # a newer entry for the same object, taken by another writer, queues behind
                ref, entry = await self._next()
                async with self._lock_for(ref[1], ref[2]):
                    try:
                        await asyncio.to_thread(write, entry)
                    except KubeNotFound:
                        pass  # deleted meanwhile
                    except KubeError as exc:
                        log.warning("%s %s/%s: could not write status: %s", ref[0], ref[1],
                                    ref[2], exc.message)
                        self._on_error(ref)
                    except Exception:  # a bug must not stop the lane
                        log.exception("status lane failed for %s/%s", ref[1], ref[2])

        return [writer() for _ in range(n)]
