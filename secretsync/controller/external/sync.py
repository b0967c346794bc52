"""Syncing one ExternalSecret: the I/O around the pure functions of ``reconcile.external*``.

Fetch through the store's cached client and the single-flight, read the target Secret (from
the watch index, else one GET), write only what the plan says, patch status only when it
differs (an Event only when the Ready condition changes), bump rollout targets when the data
changed. The scheduling half (index, workers) is ``engine.ExternalEngine``, which owns a
``Syncer``; due times go to the ``timetable`` both share.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from secretsync import api, clock
from secretsync.backends.base import Backend
from secretsync.controller.external import metrics as m
from secretsync.controller.external.flight import SingleFlight
from secretsync.controller.external.stores import ClientKey, Stores
from secretsync.controller.external.timetable import NEVER, Entry, Key, Timetable, view
from secretsync.controller.runtime import kube_call
from secretsync.errors import (
    BackendError,
    BackendUnavailable,
    InvalidInput,
    KubeError,
    KubeInvalid,
    SecretSyncError,
)
from secretsync.kube import Kube
from secretsync.reconcile import external as rx
from secretsync.reconcile import external_data as xd
from secretsync.reconcile import external_schedule as sched
from secretsync.reconcile.external_spec import ExternalSpec
from secretsync.reconcile.external_status import READY, build_status, ready_changed
from secretsync.reconcile.secrets import SecretPlan
from secretsync.reconcile.status import find_condition, status_patch
from secretsync.reconcile.template_limits import TemplateLimitExceeded

log = logging.getLogger("secretsync.external")

# Failures only a new spec can fix: no backoff retries, the object waits for a spec change
_NO_RETRY: tuple[type[SecretSyncError], ...] = (InvalidInput, TemplateLimitExceeded, KubeInvalid)


class Syncer:
    """Syncs one ExternalSecret at a time (called by the engine's workers), with the stores'
    clients, the single-flight, the index of managed Secrets the engine keeps from the
    Secret watch, and the timetable it reports the next due time to."""

    def __init__(self, kube: Kube, *, hash_key: bytes, stores: Stores, flight: SingleFlight,
                 secrets: dict[Key, dict[str, Any]], timetable: Timetable) -> None:
        self.kube = kube
        self.hash_key = hash_key  # keys the data hash (``rx.data_hash``); loaded at startup
        self.stores = stores
        self.flight = flight
        self.secrets = secrets
        self.timetable = timetable
        self.gauge_keys: set[Key] = set()  # objects with a last-check gauge (removed on delete)
        self._ns_labels: dict[str, tuple[float, dict[str, str]]] = {}

    # --- one sync ---
    async def sync(self, key: Key, entry: Entry, reason: str) -> None:
        es = entry.body
        ns, name = key
        fresh, entry.fresh = entry.fresh, False
        force = ((es.get("metadata") or {}).get("annotations") or {}).get(api.ANN_FORCE_SYNC)
        try:
            spec = entry.spec()
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
            why = rx.drift(existing, spec, view(entry), hash_key=self.hash_key)
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
            self.timetable.done(key, entry, spec)
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
            assembled = xd.assemble(spec, results)
            if spec.template is not None and spec.template.data:
                # a bounded but possibly long render (its deadline): off the event loop
                data = await asyncio.to_thread(xd.render, spec, assembled.data)
            else:
                data = xd.render(spec, assembled.data)
        except SecretSyncError as exc:
            await self._fail(key, entry, exc, retry=not isinstance(exc, _NO_RETRY))
            return
        m.LAST_CHECK.labels(ns, name).set(time.time())
        self.gauge_keys.add(key)
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
            desired = rx.desired_secret(es, spec, data, hash_key=self.hash_key)
            new_hash = desired["metadata"]["annotations"][api.ANN_DATA_HASH]
            plan = rx.plan_secret(existing, desired, spec, name)
            if plan.action == "blocked":
                reason_word = ("TargetMissing" if existing is None else "TargetImmutable"
                               if plan.changed == ("immutable",) else "TargetNotOwned")
                await self._fail(
                    key,
                    entry,
                    SecretSyncError(plan.message, reason=reason_word),
                    retry=existing is None,
                )
                return
            entry.pending_hash = new_hash
            try:
                await self._apply(ns, spec.target_name, plan, desired)
            finally:
                entry.pending_hash = None
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
            await self._fail(key, entry, exc, retry=not isinstance(exc, _NO_RETRY))

    async def _fetch(
        self, ckey: ClientKey, provider: str, backend: Backend, spec: ExternalSpec, *, fresh: bool
    ) -> dict[xd.Fetch, xd.FetchResult]:
        plan = xd.fetch_plan(spec)
        max_age = (
            0.0 if fresh else (spec.refresh_interval / 2 if spec.refresh_interval > 0 else None)
        )

        async def one(f: xd.Fetch) -> xd.FetchResult:
            ran = False

            async def call() -> Any:
                nonlocal ran
                ran = True
                if f.op == "get":
                    return await backend.get(f.ref())
                if f.op == "get_map":
                    return await backend.get_map(f.ref())
                return await backend.find(f.query())

            try:
                return await self.flight.do((ckey, f), call, max_age=max_age)  # type: ignore[no-any-return]
            except BackendUnavailable as exc:
                if ran:
                    await self.stores.report_unavailable(ckey, exc)
                return exc
            except BackendError as exc:
                return exc
            finally:
                m.FETCHES.labels("backend" if ran else "shared").inc()

        values = await asyncio.gather(*(one(f) for f in plan))
        return dict(zip(plan, values, strict=True))

    async def _target(self, ns: str, name: str) -> dict[str, Any] | None:
        cached = self.secrets.get((ns, name))
        if cached is not None:
            return cached
        return await kube_call(self.kube.get_secret, ns, name)

    async def _apply(
        self, ns: str, name: str, plan: SecretPlan, desired: dict[str, Any]
    ) -> None:
        if plan.action == "none":
            return
        if plan.action == "create":
            # A Conflict (someone created it since we looked) fails this sync; the retry sees
            # the Secret and decides again (it may not be ours to overwrite).
            obj = await kube_call(self.kube.create_secret, ns, desired)
            m.API_WRITES.labels("Secret", "create").inc()
        elif plan.action == "recreate":
            await kube_call(self.kube.delete_secret, ns, name)
            m.API_WRITES.labels("Secret", "delete").inc()
            obj = await kube_call(self.kube.create_secret, ns, desired)
            m.API_WRITES.labels("Secret", "create").inc()
        else:
            assert plan.patch is not None
            obj = await kube_call(self.kube.patch_secret, ns, name, plan.patch)
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
                "template": {"metadata": {"annotations": {rx.ANN_RESTARTED_AT: clock.rfc3339()}}}
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
        self.timetable.done(key, entry, spec)
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
            "ExternalSecret %s/%s not synced (%s): %s%s", key[0], key[1], exc.reason,
            exc.message, "; will retry" if retry else "; waits for a change of its spec",
        )
        if retry:
            self.timetable.retry(key, entry, random.random())  # noqa: S311
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
            now=clock.rfc3339(),
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
            entry.set_status(obj.get("status") or new)
        except KubeError as exc:
            log.warning(
                "ExternalSecret %s/%s: status not written: %s",
                meta.get("namespace"),
                meta.get("name"),
                exc.message,
            )
            return
        # Failures and recoveries get an Event; a first success already got "Created".
        if ready_changed(prev, new) and (not ready or find_condition(prev, READY) is not None):
            await self._event(es, reason, message, warning=not ready)

    async def _event(
        self, es: Mapping[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        if await kube_call(self.kube.post_event, es, reason=reason, message=message,
                           warning=warning):
            m.API_WRITES.labels("Event", "create").inc()
