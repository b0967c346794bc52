"""When each ExternalSecret syncs next: the engine's entries and their due times.

Why a module of its own: both the engine (new objects, spec changes, the scheduler loop) and
the sync (a retry after a failure, the next slot after a success) set due times. Kept here, the
sync needs no callback into the engine: it is handed this timetable, the engine runs it.

No kopf timers or daemons: those need a finalizer on every object; a heap of due times needs
nothing on the object. Slots are aligned per (store, keys) so objects reading the same value
refresh together and share one backend read (``reconcile.external_schedule``).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from secretsync import api
from secretsync.errors import InvalidInput
from secretsync.reconcile import external_data as xd
from secretsync.reconcile import external_schedule as sched
from secretsync.reconcile.external_spec import ExternalSpec, parse_spec

Key = tuple[str, str]  # (namespace, name)
NEVER = float("inf")


@dataclass
class Entry:
    body: dict[str, Any]
    due: float = NEVER  # wall-clock time of the next sync
    failures: int = 0
    last_force: str | None = None
    synced_hash: str | None = None  # hash we last wrote (ahead of the status event)
    pending_hash: str | None = None  # hash of a write in flight (its watch event is ours)
    queued: bool = False
    running: bool = False
    rerun: str | None = None
    fresh: bool = False  # bypass the single-flight cache (force-sync)
    reason: str = ""
    _parsed: ExternalSpec | InvalidInput | None = field(default=None, repr=False)
    _parsed_from: dict[str, Any] | None = field(default=None, repr=False)

    def spec(self) -> ExternalSpec:
        """The typed spec of ``body``, parsed once per body the watch delivers (every
        handler, the sync and the scheduler share it); raises ``InvalidInput``."""
        if self._parsed_from is not self.body:
            try:
                self._parsed = parse_spec(self.body)
            except InvalidInput as exc:
                self._parsed = exc
            self._parsed_from = self.body
        if isinstance(self._parsed, InvalidInput):
            raise self._parsed.with_traceback(None)
        assert self._parsed is not None
        return self._parsed

    def set_status(self, status: dict[str, Any]) -> None:
        """Our status write landed: ``body`` carries it (the spec, and its parse, stay; a
        newer spec the watch delivered meanwhile is kept, not overwritten)."""
        parsed = self._parsed_from is self.body
        self.body = {**self.body, "status": status}
        if parsed:
            self._parsed_from = self.body


def view(entry: Entry) -> dict[str, Any]:
    """The ExternalSecret with the hash we last wrote (its status event may lag)."""
    status = dict(entry.body.get("status") or {})
    if entry.synced_hash:
        status["syncedDataHash"] = entry.synced_hash
    return {**entry.body, "status": status}


def next_due(obj: Mapping[str, Any], spec: ExternalSpec | None = None, store_key: str = "",
             *, just_synced: bool = False) -> float:
    """The object's next aligned refresh slot (NEVER when it does not refresh)."""
    try:
        spec = spec or parse_spec(obj)
    except InvalidInput:
        return NEVER
    if spec.refresh_policy != "Periodic" or spec.refresh_interval <= 0:
        return NEVER
    ns = (obj.get("metadata") or {}).get("namespace") or ""
    store_ns = ns if spec.store_kind == api.KIND_STORE else ""
    store = store_key or f"{spec.store_kind}/{store_ns}/{spec.store_name}"
    keys = [f.describe() for f in xd.fetch_plan(spec)]
    offset = sched.phase(store, keys, spec.refresh_interval)
    gap = spec.refresh_interval / 2 if just_synced else 0.0
    return sched.next_slot(time.time(), spec.refresh_interval, offset, min_gap=gap)


class Timetable:
    """The due times of the entries, as a heap; ``run`` hands due entries to ``enqueue``."""

    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}
        self._heap: list[tuple[float, Key]] = []
        self._wake = asyncio.Event()

    def schedule(self, key: Key, entry: Entry, due: float) -> None:
        entry.due = due
        if due != NEVER:
            heapq.heappush(self._heap, (due, key))
            self._wake.set()

    def done(self, key: Key, entry: Entry, spec: ExternalSpec | None) -> None:
        """A successful sync: failures forgotten, the next slot at least half an interval
        away."""
        entry.failures = 0
        self.schedule(key, entry, next_due(entry.body, spec, just_synced=True))

    def retry(self, key: Key, entry: Entry, jitter: float) -> None:
        """A failed sync: again after an exponential backoff (``jitter`` in [0, 1))."""
        self.schedule(key, entry, time.time() + sched.backoff(entry.failures, jitter))

    async def run(self, enqueue: Callable[[Key, Entry, str], None]) -> None:
        while True:
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                due, key = heapq.heappop(self._heap)
                entry = self.entries.get(key)
                if entry is not None and entry.due == due:
                    entry.due = NEVER
                    enqueue(key, entry, "retry" if entry.failures else "periodic")
            self._wake.clear()
            timeout = (self._heap[0][0] - now) if self._heap else 3600.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, min(timeout, 3600)))
            except TimeoutError:
                pass
