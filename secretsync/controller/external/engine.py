"""The ExternalSecret engine: an in-memory index of objects and a refresh scheduler.

kopf feeds events in (``handlers`` holds the thin handlers); this module decides *when*
to sync — new object, spec change, force-sync, drift seen on the Secret watch, the object's
aligned refresh slot (``timetable``) or a backoff retry — and runs syncs on a bounded set of
workers. *How* one object is synced is ``sync.Syncer``, which the engine owns.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from secretsync import api
from secretsync.controller.external import metrics as m
from secretsync.controller.external.flight import SingleFlight
from secretsync.controller.external.stores import Stores
from secretsync.controller.external.sync import Syncer
from secretsync.controller.external.timetable import (
    Entry,
    Key,
    Timetable,
    next_due,
    view,
)
from secretsync.errors import InvalidInput, SecretSyncError
from secretsync.kube import Kube
from secretsync.reconcile import external as rx
from secretsync.reconcile import external_schedule as sched

log = logging.getLogger("secretsync.external")

_WEAK = ("startup check", "periodic")  # reasons that never override a queued stronger one


class ExternalEngine:
    """ExternalSecrets, SecretStores and ClusterSecretStores: the index of objects, the
    workers, and the ``Syncer`` they run."""

    def __init__(
        self, kube: Kube, *, hash_key: bytes, workers: int = 16, window: float = 10.0
    ) -> None:
        self.kube = kube
        self.stores = Stores(kube)
        self.timetable = Timetable()
        self.entries: dict[Key, Entry] = self.timetable.entries
        self.secrets: dict[Key, dict[str, Any]] = {}  # managed Secrets by (ns, name)
        self.syncer = Syncer(kube, hash_key=hash_key, stores=self.stores,
                             flight=SingleFlight(window), secrets=self.secrets,
                             timetable=self.timetable)
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._side: set[asyncio.Future[Any]] = set()
        self.workers = workers

    @property
    def hash_key(self) -> bytes:
        return self.syncer.hash_key

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.timetable.run(self._enqueue),
                                               name="external-scheduler"))
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"external-{i}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.stores.close_all()

    # --- events in ------------------------------------------------------------------------------
    def on_external(self, type_: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        if type_ == "DELETED":
            self.entries.pop(key, None)
            if key in self.syncer.gauge_keys:
                self.syncer.gauge_keys.discard(key)
                m.LAST_CHECK.remove(*key)
            return
        entry = self.entries.get(key)
        if entry is None or (entry.body.get("metadata") or {}).get("uid") != meta.get("uid"):
            entry = self.entries[key] = Entry(body=obj)
            entry.synced_hash = (obj.get("status") or {}).get("syncedDataHash")
            # A force-sync value present when we first see the object was acted on before.
            entry.last_force = (meta.get("annotations") or {}).get(api.ANN_FORCE_SYNC)
            try:
                why = sched.refresh_reason(
                    entry.spec(), obj, secret_exists=None, last_force=entry.last_force, due=False
                )
            except InvalidInput:
                why = "new"  # the sync reports the bad spec in status
            if why is None:
                # In sync before a restart: verify the Secret locally now, refresh from the
                # backend at the object's slot (that spread is the restart jitter).
                self.timetable.schedule(key, entry, next_due(obj, entry.spec()))
                why = "startup check"
            self._enqueue(key, entry, why)
            return
        old = entry.body
        entry.body = obj
        ometa = old.get("metadata") or {}
        force = (meta.get("annotations") or {}).get(api.ANN_FORCE_SYNC)
        if force and force != entry.last_force:
            entry.fresh = True
            self._enqueue(key, entry, "force-sync")
        elif ometa.get("generation") != meta.get("generation"):
            entry.failures = 0
            self._enqueue(key, entry, "spec changed")

    def on_secret(self, type_: str | None, secret: dict[str, Any]) -> bool:
        """A managed Secret's watch event; True when it enqueued a repair of its owner."""
        meta = secret.get("metadata") or {}
        skey: Key = (str(meta.get("namespace")), str(meta.get("name")))
        owner = (meta.get("annotations") or {}).get(rx.ANN_OWNER) or next(
            (
                r.get("name")
                for r in meta.get("ownerReferences") or []
                if r.get("kind") == api.KIND_EXTERNAL and r.get("controller")
            ),
            None,
        )
        if type_ == "DELETED":
            self.secrets.pop(skey, None)
        else:
            self.secrets[skey] = secret
        if not owner:
            return False
        key: Key = (skey[0], str(owner))
        entry = self.entries.get(key)
        if entry is None:
            return False
        try:
            spec = entry.spec()
        except InvalidInput:
            return False
        if spec.target_name != skey[1]:
            return False
        ann = (meta.get("annotations") or {}).get(api.ANN_DATA_HASH)
        if entry.pending_hash and ann == entry.pending_hash and type_ != "DELETED":
            return False  # the event of our own write, arriving before the write call returned
        why = rx.drift(
            None if type_ == "DELETED" else secret, spec, view(entry), hash_key=self.hash_key
        )
        if not why:
            return False
        log.info("ExternalSecret %s/%s: %s; repairing", key[0], key[1], why)
        self._enqueue(key, entry, f"drift: {why}")
        return True

    async def resync(self, listed: Mapping[Key, dict[str, Any]]) -> int:
        """Replay what the Secret watch would have said (``controller.resync``): a Secret we
        know that ``listed`` (every managed Secret, just listed) no longer shows was deleted
        unseen; one it shows at another resourceVersion changed unseen. Each goes through
        ``on_secret`` as its watch event would have -- a drift is repaired, nothing else is
        written. Returns how many repairs that enqueued."""
        repairs = 0
        for skey, secret in list(self.secrets.items()):
            if skey not in listed:
                repairs += self.on_secret("DELETED", secret)
        for skey, secret in listed.items():
            known = self.secrets.get(skey)
            if known is None or _rv(known) != _rv(secret):
                repairs += self.on_secret("MODIFIED", secret)
        return repairs

    def on_store(self, kind: str, type_: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name"))
        if type_ == "DELETED":
            self.stores.remove(kind, ns, name)
            changed = True
        else:
            changed = self.stores.upsert(kind, obj)
        if not changed:
            return
        if type_ != "DELETED":
            self._spawn(self._validate_store(kind, obj))
        if type_ is None:
            return
        for key, entry in self.entries.items():
            ref = (entry.body.get("spec") or {}).get("secretStoreRef") or {}
            if (
                ref.get("name") == name
                and (ref.get("kind") or api.KIND_STORE) == kind
                and (kind == api.KIND_CLUSTER_STORE or key[0] == ns)
            ):
                entry.failures = 0
                self._enqueue(key, entry, "store changed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _validate_store(self, kind: str, obj: dict[str, Any]) -> None:
        """Validate a new/changed store right away so its status is truthful even before an
        ExternalSecret uses it (ClusterSecretStores whose refs depend on the reader's
        namespace are validated on first use)."""
        from secretsync.controller.external.stores import refs_need_namespace

        spec = obj.get("spec") or {}
        if kind == api.KIND_CLUSTER_STORE and refs_need_namespace(spec.get("provider")):
            return
        ns = str((obj.get("metadata") or {}).get("namespace") or "")
        try:
            await self.stores.client(kind, obj, ns)
        except SecretSyncError:
            pass  # recorded in the store's status by Stores

    # --- scheduling -------------------------------------------------------------------------------
    def _enqueue(self, key: Key, entry: Entry, reason: str) -> None:
        if entry.running:
            entry.rerun = reason
            return
        if not (entry.queued and reason in _WEAK):
            entry.reason = reason
        if not entry.queued:
            entry.queued = True
            self._queue.put_nowait(key)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            entry = self.entries.get(key)
            if entry is None:
                continue
            entry.queued = False
            entry.running = True
            started = time.perf_counter()
            try:
                await self.syncer.sync(key, entry, entry.reason)
                m.SYNC_SECONDS.labels("ok" if entry.failures == 0 else "error").observe(
                    time.perf_counter() - started
                )
            except Exception:  # a bug must not kill the worker; the object retries
                log.exception("ExternalSecret %s/%s: unexpected error", *key)
                entry.failures += 1
                self.timetable.retry(key, entry, random.random())  # noqa: S311
            finally:
                entry.running = False
                if entry.rerun and key in self.entries:
                    reason, entry.rerun = entry.rerun, None
                    self._enqueue(key, entry, reason)


def _rv(obj: Mapping[str, Any]) -> object:
    return (obj.get("metadata") or {}).get("resourceVersion")
