"""The ExternalSecret engine: an in-memory index, a refresh scheduler and the sync of one object.

kopf feeds events in (``external.py`` holds the thin handlers); this module decides *when*
to sync (aligned phases + backoff, see ``reconcile.external_schedule``), runs syncs on a
bounded set of workers, and does the I/O around the pure functions of
``reconcile.external*``: fetch through the store's cached client and the single-flight,
read the target Secret (from the watch index, else one GET), write only what the plan says,
patch status only when it differs, bump rollout targets when data changed.

No kopf timers or daemons: those need a finalizer on every object; a heap of due times
needs nothing on the object.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secretsync import api
from secretsync.backends.base import Backend
from secretsync.controller import external_metrics as m
from secretsync.controller.external_flight import SingleFlight
from secretsync.controller.runtime import kube_call
from secretsync.controller.stores import ClientKey, Stores
from secretsync.errors import (
    BackendError,
    BackendUnavailable,
    InvalidInput,
    KubeConflict,
    KubeError,
    SecretSyncError,
)
from secretsync.kube import Kube, now_rfc3339
from secretsync.reconcile import external as rx
from secretsync.reconcile import external_schedule as sched
from secretsync.reconcile.external_spec import ExternalSpec, parse_spec
from secretsync.reconcile.external_status import (
    build_status,
    condition_changed,
    ready_condition,
    status_patch,
)

log = logging.getLogger("secretsync.external")

Key = tuple[str, str]  # (namespace, name)
NEVER = float("inf")


@dataclass
class Entry:
    body: dict[str, Any]
    due: float = NEVER  # wall-clock time of the next sync
    failures: int = 0
    last_force: str | None = None
    synced_hash: str | None = None  # hash we last wrote (ahead of the status event)
    queued: bool = False
    running: bool = False
    rerun: str | None = None
    fresh: bool = False  # bypass the single-flight cache (force-sync)
    reason: str = ""


class Engine:
    def __init__(self, kube: Kube, *, workers: int = 16, window: float = 10.0) -> None:
        self.kube = kube
        self.stores = Stores(kube)
        self.flight = SingleFlight(window)
        self.entries: dict[Key, Entry] = {}
        self.secrets: dict[Key, dict[str, Any]] = {}  # managed Secrets by (ns, name)
        self._heap: list[tuple[float, Key]] = []
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._side: set[asyncio.Future[Any]] = set()
        self._ns_labels: dict[str, tuple[float, dict[str, str]]] = {}
        self.workers = workers

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._scheduler(), name="external-scheduler"))
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
            if key in _gauge_keys:
                _gauge_keys.discard(key)
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
                    parse_spec(obj), obj, secret_exists=None, last_force=entry.last_force, due=False
                )
            except InvalidInput:
                why = "new"  # the sync reports the bad spec in status
            if why is None:
                # In sync before a restart: verify the Secret locally now, refresh from the
                # backend at the object's slot (that spread is the restart jitter).
                self._schedule(key, entry, self._next_due(entry, obj))
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

    def on_secret(self, type_: str | None, secret: dict[str, Any]) -> None:
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
            return
        key: Key = (skey[0], str(owner))
        entry = self.entries.get(key)
        if entry is None:
            return
        try:
            spec = parse_spec(entry.body)
        except InvalidInput:
            return
        if spec.target_name != skey[1]:
            return
        why = rx.drift(None if type_ == "DELETED" else secret, spec, self._view(entry))
        if why:
            log.info("ExternalSecret %s/%s: %s; repairing", key[0], key[1], why)
            self._enqueue(key, entry, f"drift: {why}")

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
        from secretsync.controller.stores import refs_need_namespace

        spec = obj.get("spec") or {}
        if kind == api.KIND_CLUSTER_STORE and refs_need_namespace(spec.get("provider")):
            return
        ns = str((obj.get("metadata") or {}).get("namespace") or "")
        try:
            await self.stores.client(kind, obj, ns)
        except SecretSyncError:
            pass  # recorded in the store's status by Stores

    # --- scheduling -------------------------------------------------------------------------------
    def _view(self, entry: Entry) -> dict[str, Any]:
        """The ExternalSecret with the hash we last wrote (its status event may lag)."""
        status = dict(entry.body.get("status") or {})
        if entry.synced_hash:
            status["syncedDataHash"] = entry.synced_hash
        return {**entry.body, "status": status}

    def _enqueue(self, key: Key, entry: Entry, reason: str) -> None:
        if entry.running:
            entry.rerun = reason
            return
        if not (entry.queued and reason in _WEAK):
            entry.reason = reason
        if not entry.queued:
            entry.queued = True
            self._queue.put_nowait(key)

    def _schedule(self, key: Key, entry: Entry, due: float) -> None:
        entry.due = due
        if due != NEVER:
            heapq.heappush(self._heap, (due, key))
            self._wake.set()

    def _next_due(
        self,
        entry: Entry,
        obj: Mapping[str, Any],
        spec: ExternalSpec | None = None,
        store_key: str = "",
    ) -> float:
        try:
            spec = spec or parse_spec(obj)
        except InvalidInput:
            return NEVER
        if spec.refresh_policy != "Periodic" or spec.refresh_interval <= 0:
            return NEVER
        ns = (obj.get("metadata") or {}).get("namespace") or ""
        store_ns = ns if spec.store_kind == api.KIND_STORE else ""
        store = store_key or f"{spec.store_kind}/{store_ns}/{spec.store_name}"
        keys = [f.describe() for f in rx.fetch_plan(spec)]
        offset = sched.phase(store, keys, spec.refresh_interval)
        return sched.next_slot(time.time(), spec.refresh_interval, offset)

    async def _scheduler(self) -> None:
        while True:
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                due, key = heapq.heappop(self._heap)
                entry = self.entries.get(key)
                if entry is not None and entry.due == due:
                    entry.due = NEVER
                    self._enqueue(key, entry, "retry" if entry.failures else "periodic")
            self._wake.clear()
            timeout = (self._heap[0][0] - now) if self._heap else 3600.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, min(timeout, 3600)))
            except TimeoutError:
                pass

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
                await self.sync(key, entry, entry.reason)
                m.SYNC_SECONDS.labels("ok" if entry.failures == 0 else "error").observe(
                    time.perf_counter() - started)
            except Exception:  # a bug must not kill the worker; the object retries
                log.exception("ExternalSecret %s/%s: unexpected error", *key)
                entry.failures += 1
                self._schedule(
                    key,
                    entry,
                    time.time() + sched.backoff(entry.failures, random.random()),  # noqa: S311
                )
            finally:
                entry.running = False
                if entry.rerun and key in self.entries:
                    reason, entry.rerun = entry.rerun, None
                    self._enqueue(key, entry, reason)

    # --- one sync ---
    async def sync(self, key: Key, entry: Entry, reason: str) -> None:
        es = entry.body
        ns, name = key
        fresh, entry.fresh = entry.fresh, False
        force = ((es.get("metadata") or {}).get("annotations") or {}).get(api.ANN_FORCE_SYNC)
        try:
            spec = parse_spec(es)
        except InvalidInput as exc:
            await self._fail(key, entry, exc, retry=False)
            return
        if reason == "force-sync":
            entry.last_force = force
        try:
            existing = await self._target(ns, spec.target_name)
        except KubeError as exc:
            await self._fail(key, entry, exc, retry=True)
            return
        if reason == "startup check":
            # After a restart: compare the Secret with the status hash locally; the backend
            # is read at the object's next slot (that spread is the restart jitter).
            why = rx.drift(existing, spec, self._view(entry))
            gone = existing is None and spec.creation_policy in ("Owner", "Orphan")
            if not why and not gone:
                return
            reason = f"drift: {why or 'target Secret missing'}"
        blocked = rx.blocked_reason(
            existing, spec, name, owner_uid=str((es.get("metadata") or {}).get("uid"))
        )
        if blocked:
            word = "TargetMissing" if existing is None else "TargetNotOwned"
            await self._fail(key, entry, SecretSyncError(blocked, reason=word), retry=True)
            return
        if (
            spec.refresh_policy == "CreatedOnce"
            and existing is not None
            and entry.synced_hash
            and not reason.startswith(("force", "spec"))
        ):
            self._done(key, entry, spec)
            return
        try:
            store_kind, store_name = spec.store_kind, spec.store_name
            store = await self.stores.get(store_kind, ns, store_name)
            if store is None:
                raise BackendError(f"{store_kind} {store_name!r} not found", reason="StoreNotFound")
            if store_kind == api.KIND_CLUSTER_STORE:
                await self._check_namespace(store, ns)
            ckey, provider, backend = await self.stores.client(store_kind, store, ns)
            results = await self._fetch(
                ckey, provider, backend, spec, fresh=fresh or reason == "force-sync"
            )
            assembled = rx.assemble(spec, results)
            data = rx.render(spec, assembled.data)
        except SecretSyncError as exc:
            await self._fail(key, entry, exc, retry=not isinstance(exc, _NO_RETRY))
            return
        m.LAST_CHECK.labels(ns, name).set(time.time())
        _gauge_keys.add(key)
        try:
            if assembled.missing and not data and spec.deletion_policy == "Delete":
                await self._delete_target(ns, spec, existing, name)
                await self._succeed(
                    key,
                    entry,
                    spec,
                    None,
                    "Deleted",
                    "remote secrets deleted; target Secret deleted",
                    force,
                )
                return
            desired = rx.desired_secret(es, spec, data)
            new_hash = desired["metadata"]["annotations"][api.ANN_DATA_HASH]
            plan = rx.plan_secret(existing, desired, spec, name)
            if plan.action == "blocked":
                reason_word = "TargetMissing" if existing is None else "TargetNotOwned"
                await self._fail(
                    key,
                    entry,
                    SecretSyncError(plan.message, reason=reason_word),
                    retry=existing is None,
                )
                return
            await self._apply(ns, spec.target_name, plan, desired)
            old_hash = entry.synced_hash or (es.get("status") or {}).get("syncedDataHash")
            entry.synced_hash = new_hash
            changed = old_hash is not None and old_hash != new_hash
            if changed and spec.restart_targets:
                await self._restart(ns, spec, es)
            m.SYNCS.labels("changed" if plan.action != "none" else "unchanged").inc()
            if changed or (plan.action != "none" and old_hash is None):
                await self._event(
                    es,
                    "Updated" if changed else "Created",
                    f"Secret {spec.target_name} {'updated' if changed else 'written'}"
                    f" ({len(data)} keys)",
                )
            elif plan.action != "none":
                await self._event(es, "Repaired", f"Secret {spec.target_name} restored ({reason})")
            msg = f"Secret {spec.target_name} in sync ({len(data)} keys)"
            if spec.creation_policy == "None":
                msg = f"values fetched ({len(data)} keys); creationPolicy None writes no Secret"
            await self._succeed(key, entry, spec, new_hash, "Synced", msg, force)
        except KubeError as exc:
            await self._fail(key, entry, exc, retry=True)

    async def _fetch(
        self, ckey: ClientKey, provider: str, backend: Backend, spec: ExternalSpec, *, fresh: bool
    ) -> dict[rx.Fetch, rx.FetchResult]:
        plan = rx.fetch_plan(spec)
        max_age = (
            0.0 if fresh else (spec.refresh_interval / 2 if spec.refresh_interval > 0 else None)
        )

        async def one(f: rx.Fetch) -> rx.FetchResult:
            async def call() -> Any:
                m.FETCHES.labels("backend").inc()
                if f.op == "get":
                    return await backend.get(f.ref())
                if f.op == "get_map":
                    return await backend.get_map(f.ref())
                return await backend.find(f.query())

            before = self.flight.shared
            try:
                return await self.flight.do((ckey, f), call, max_age=max_age)  # type: ignore[no-any-return]
            except BackendUnavailable as exc:
                self.stores.report_unavailable(ckey, exc)
                return exc
            except BackendError as exc:
                return exc
            finally:
                if self.flight.shared != before:
                    m.FETCHES.labels("shared").inc()

        values = await asyncio.gather(*(one(f) for f in plan))
        return dict(zip(plan, values, strict=True))

    async def _target(self, ns: str, name: str) -> dict[str, Any] | None:
        cached = self.secrets.get((ns, name))
        if cached is not None:
            return cached
        return await kube_call(self.kube.get_secret, ns, name)

    async def _apply(
        self, ns: str, name: str, plan: rx.SecretPlan, desired: dict[str, Any]
    ) -> None:
        if plan.action == "none":
            return
        if plan.action == "create":
            try:
                obj = await kube_call(self.kube.create_secret, ns, desired)
                m.API_WRITES.labels("Secret", "create").inc()
            except KubeConflict:
                obj = await kube_call(self.kube.replace_secret, ns, name, desired)
                m.API_WRITES.labels("Secret", "replace").inc()
        elif plan.action == "recreate":
            await kube_call(self.kube.delete_secret, ns, name)
            m.API_WRITES.labels("Secret", "delete").inc()
            obj = await kube_call(self.kube.create_secret, ns, desired)
            m.API_WRITES.labels("Secret", "create").inc()
        else:
            assert plan.body is not None
            obj = await kube_call(self.kube.patch_secret, ns, name, plan.body)
            m.API_WRITES.labels("Secret", "patch").inc()
        self.secrets[(ns, name)] = obj

    async def _delete_target(
        self, ns: str, spec: ExternalSpec, existing: Mapping[str, Any] | None, es_name: str
    ) -> None:
        if existing is not None and rx.owned_by(existing, es_name):
            await kube_call(self.kube.delete_secret, ns, spec.target_name)
            m.API_WRITES.labels("Secret", "delete").inc()
            self.secrets.pop((ns, spec.target_name), None)

    async def _restart(self, ns: str, spec: ExternalSpec, es: Mapping[str, Any]) -> None:
        patch = {
            "spec": {
                "template": {"metadata": {"annotations": {rx.ANN_RESTARTED_AT: now_rfc3339()}}}
            }
        }
        for t in spec.restart_targets:
            try:
                await kube_call(self.kube.patch_workload, ns, t.kind, t.name, patch)
                m.API_WRITES.labels(t.kind, "patch").inc()
                await self._event(
                    es, "RolloutRestart", f"{t.kind} {t.name} restarted (Secret data changed)"
                )
            except KubeError as exc:
                log.warning(
                    "ExternalSecret %s/%s: cannot restart %s %s: %s",
                    ns,
                    (es.get("metadata") or {}).get("name"),
                    t.kind,
                    t.name,
                    exc.message,
                )
                await self._event(
                    es, "RolloutRestartFailed", f"{t.kind} {t.name}: {exc.reason}", warning=True
                )

    async def _check_namespace(self, store: Mapping[str, Any], ns: str) -> None:
        conditions = (store.get("spec") or {}).get("conditions")
        labels: dict[str, str] | None = None
        if sched.needs_namespace_labels(conditions):
            labels = await self._namespace_labels(ns)
        if not sched.namespace_allowed(conditions, ns, labels):
            name = (store.get("metadata") or {}).get("name")
            raise BackendError(
                f"ClusterSecretStore {name!r} may not be used from namespace "
                f"{ns!r} (spec.conditions)",
                reason="NamespaceNotAllowed",
            )

    async def _namespace_labels(self, ns: str) -> dict[str, str]:
        hit = self._ns_labels.get(ns)
        if hit is not None and time.monotonic() - hit[0] < 30:
            return hit[1]
        obj = await kube_call(self.kube.get_namespace, ns) or {}
        labels = dict((obj.get("metadata") or {}).get("labels") or {})
        self._ns_labels[ns] = (time.monotonic(), labels)
        return labels

    # --- outcomes ---
    def _done(self, key: Key, entry: Entry, spec: ExternalSpec | None) -> None:
        entry.failures = 0
        self._schedule(key, entry, self._next_due(entry, entry.body, spec))

    async def _succeed(
        self,
        key: Key,
        entry: Entry,
        spec: ExternalSpec,
        new_hash: str | None,
        reason: str,
        message: str,
        force: str | None,
    ) -> None:
        entry.last_force = force
        self._done(key, entry, spec)
        await self._status(
            entry,
            ready=True,
            reason=reason,
            message=message,
            data_hash=new_hash,
            target=spec.target_name,
        )

    async def _fail(self, key: Key, entry: Entry, exc: SecretSyncError, *, retry: bool) -> None:
        entry.failures += 1
        m.SYNCS.labels("error").inc()
        m.ERRORS.labels(exc.reason).inc()
        log.warning(
            "ExternalSecret %s/%s not synced (%s): %s", key[0], key[1], exc.reason, exc.message
        )
        if retry:
            delay = sched.backoff(entry.failures, random.random())  # noqa: S311
            self._schedule(key, entry, time.time() + delay)
        else:
            entry.due = NEVER  # waits for a spec/store change
        await self._status(entry, ready=False, reason=exc.reason, message=exc.message)

    async def _status(
        self,
        entry: Entry,
        *,
        ready: bool,
        reason: str,
        message: str,
        data_hash: str | None = None,
        target: str | None = None,
    ) -> None:
        es = entry.body
        meta = es.get("metadata") or {}
        prev = es.get("status") or {}
        new = build_status(
            prev,
            generation=meta.get("generation"),
            ready=ready,
            reason=reason,
            message=message,
            now=now_rfc3339(),
            data_hash=data_hash,
            target=target,
        )
        patch = status_patch(prev, new)
        if patch is None:
            return
        try:
            obj = await kube_call(
                self.kube.patch_custom_status,
                api.GROUP,
                api.VERSION,
                api.PLURAL_EXTERNAL,
                meta.get("namespace"),
                meta.get("name"),
                patch,
            )
            m.API_WRITES.labels(api.KIND_EXTERNAL, "patch-status").inc()
            entry.body = {**es, "status": obj.get("status") or new}
        except KubeError as exc:
            log.warning(
                "ExternalSecret %s/%s: status not written: %s",
                meta.get("namespace"),
                meta.get("name"),
                exc.message,
            )
            return
        # Failures and recoveries get an Event; a first success already got "Created".
        if condition_changed(prev, new) and (not ready or ready_condition(prev) is not None):
            await self._event(es, reason, message, warning=not ready)

    async def _event(
        self, es: Mapping[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        try:
            await kube_call(
                self.kube.create_event,
                es,
                reason=reason,
                message=message,
                type_="Warning" if warning else "Normal",
            )
            m.API_WRITES.labels("Event", "create").inc()
        except KubeError as exc:
            log.debug("event not posted: %s", exc.message)


_NO_RETRY: tuple[type[SecretSyncError], ...] = (InvalidInput,)
_WEAK = ("startup check", "periodic")
_gauge_keys: set[Key] = set()
