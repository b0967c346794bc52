"""kopf handlers for SealedSecrets and the Secrets they manage (self-healing).

Thin by design: every decision is made by ``secretsync.reconcile.sealed`` (what the Secret
should be, why it cannot be) and ``secretsync.reconcile.secrets`` (may we touch the existing
Secret, what minimal patch, does the status need a write). This module does the I/O: API calls
in threads, RSA on the shared pool, status, Events, metrics.

Only ``on.event`` handlers are used, so kopf stores nothing on the objects (no progress or
diff-base annotations -- on a Secret those would be copies of its data). Decrypted values are
cached per SealedSecret generation so that the Secret watch can tell "our own write" from "an
edit to undo" without another RSA operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from secretsync import api
from secretsync.controller import metrics
from secretsync.controller.burst import Burst
from secretsync.controller.runtime import Runtime, get_runtime
from secretsync.controller.sealed_lane import EventSpec, Lane
from secretsync.errors import (
    KubeConflict,
    KubeError,
    KubeInvalid,
    KubeNotFound,
    SecretSyncError,
)
from secretsync.kube import Kube
from secretsync.reconcile import sealed as rs
from secretsync.reconcile.secrets import (
    SecretPlan,
    controller_ref,
    ownership,
    plan_secret,
    status_patch,
    synced_condition,
)

log = logging.getLogger("secretsync.sealed")

def sealed_groups(bitnami: bool) -> dict[str, str]:
    """group -> version of the SealedSecret kinds to reconcile."""
    groups = {api.GROUP: api.VERSION}
    if bitnami:
        groups[api.BITNAMI_GROUP] = "v1alpha1"
    return groups


SEALED_GROUPS = sealed_groups(False)  # the groups reconciled; register() adds Bitnami's
_RETRY_REASONS = {rs.REASON_DECRYPT_FAILED, rs.REASON_NO_KEYS, rs.REASON_SCOPE_MISMATCH}
# Failures that only a new spec can change: not retried, not even re-rendered, until then
_FINAL_REASONS = {rs.REASON_INVALID_TEMPLATE, rs.REASON_INVALID_SPEC}
_TRANSIENT_BACKOFF = (2.0, 5.0, 10.0, 30.0, 60.0)

Ref = tuple[str, str, str]  # (apiVersion, namespace, name)


@dataclass
class _Cached:
    key: tuple[Any, ...]
    desired: dict[str, Any]


_cache: dict[str, _Cached] = {}  # SealedSecret uid -> desired Secret of its current spec
# SealedSecret uid -> (cache key, its final failure): a template that hit a render bound is
# not rendered again for the same spec, whatever triggers the reconcile
_final: dict[str, tuple[tuple[Any, ...], rs.SealFailure]] = {}
# SealedSecret uid -> (cache key, decryption started before kopf ran): see prefetch()
_prefetched: dict[str, tuple[tuple[Any, ...], Future[dict[str, Any]]]] = {}
_locks: dict[tuple[str, str], asyncio.Lock] = {}
_retry_pending: set[Ref] = set()
_retries: asyncio.Queue[Ref] | None = None
_lane: Lane | None = None
_burst = Burst()  # Secret writes grouped while a backlog decrypts (controller.burst)
_failed: dict[Ref, str] = {}  # objects whose last reconcile failed -> reason
_attempts: dict[Ref, int] = {}  # consecutive API-error retries (backoff)
# (namespace, name) -> the managed Secret as last seen (LIST at start, then the Secret watch)
_index: dict[tuple[str, str], dict[str, Any]] = {}
_index_ready = False
# SealedSecret uid -> resourceVersion reconciled by the initial sync (sealed_start): kopf's
# listing of that same version is skipped, once
_synced_at_start: dict[str, str] = {}


def _ref(obj: Mapping[str, Any]) -> Ref:
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(meta.get("namespace")), str(meta.get("name")))


def _what(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'SealedSecret')} {meta.get('namespace')}/{meta.get('name')}"


def _lock(ns: str, name: str) -> asyncio.Lock:
    lock = _locks.get((ns, name))
    if lock is None:
        lock = _locks[(ns, name)] = asyncio.Lock()
    return lock


def _gvp(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    group, _, version = str(obj.get("apiVersion")).partition("/")
    return group, version, api.PLURAL_SEALED


# --- the reconcile --------------------------------------------------------------------------


async def _desired(rt: Runtime, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Decrypt (or reuse the cached result for this generation) and render; SealFailure.

    One pool job per object (decode, every item's RSA operation, render): a hand-off per item
    cost the event loop more than the items' parallelism gained -- with many objects queued
    the pool is busy anyway, and one object's items are milliseconds apart."""
    # spec changes bump the generation; scope and hint live in metadata. A new key cannot
    # change what an item decrypts to, so successes stay valid across key changes.
    key = rs.cache_key(obj)
    uid = str((obj.get("metadata") or {}).get("uid"))
    cached = _cache.get(uid)
    if cached is not None and cached.key == key:
        return cached.desired
    final = _final.get(uid)
    if final is not None and final[0] == key:
        raise final[1]
    loop = asyncio.get_running_loop()
    early = _prefetched.pop(uid, None)
    with lane().working(), _burst.expecting():
        desired = None
        if early is not None and early[0] == key:
            with contextlib.suppress(rs.SealFailure):  # a failure: decide again, keys now
                desired = await asyncio.wrap_future(early[1])
        if desired is None:
            try:
                desired = await loop.run_in_executor(rt.pool, rs.unseal, obj, rt.keys.registry)
            except rs.SealFailure as exc:
                if exc.reason in _FINAL_REASONS:
                    _final[uid] = (key, exc)
                raise
    _final.pop(uid, None)
    metrics.ITEMS_DECRYPTED.inc(len((obj.get("spec") or {}).get("encryptedData") or {}))
    _cache[uid] = _Cached(key, desired)
    return desired


@dataclass
class _Written:
    plan: SecretPlan
    secret: dict[str, Any] | None = None  # the Secret as the API server returned it


def _write(kube: Kube, obj: Mapping[str, Any], desired: dict[str, Any],
           plan: SecretPlan) -> _Written:
    """In one worker thread: the Secret write, re-reading it after a 409/404 and planning
    again."""
    ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    for attempt in range(4):
        if attempt > 0:
            existing = kube.get_secret(ns, name)
            _check_owner(existing, obj)
            plan = plan_secret(existing, desired)
        try:
            if plan.action == "create":
                return _Written(plan, kube.create_secret(ns, desired))
            if plan.action == "patch":
                assert plan.patch is not None
                return _Written(plan, kube.patch_secret(ns, name, plan.patch))
            if plan.action == "recreate":
                kube.delete_secret(ns, name)
                return _Written(plan, kube.create_secret(ns, desired))
            return _Written(plan)
        except (KubeConflict, KubeNotFound):
            continue  # created, changed or deleted under us: look again
    raise KubeConflict(f"Secret {ns}/{name} kept changing while being written")


def _check_owner(existing: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> None:
    if existing is not None and ownership(existing, obj) == "foreign":
        meta = existing.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        raise rs.SealFailure(
            f"Secret {ns}/{name} exists and is not managed by secretsync; annotate it "
            f'{api.ANN_MANAGED}="true" to hand it over',
            reason=rs.REASON_UNMANAGED,
        )


async def _apply(rt: Runtime, obj: Mapping[str, Any], desired: dict[str, Any]) -> str:
    """Bring the Secret in line; returns the action taken ("none" when nothing changed).

    The first look uses the index of managed Secrets (seeded by one LIST at start, kept
    current by the Secret watch), so the common cases cost one thread hand-off for the write,
    or nothing at all; a stale index only means a 409, after which the Secret is read for real
    (in the same thread)."""
    ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    existing = _index.get((ns, name)) if _index_ready else await asyncio.to_thread(
        rt.kube.get_secret, ns, name)
    _check_owner(existing, obj)
    plan = plan_secret(existing, desired)
    if plan.action == "none":
        return "none"
    with lane().working():
        await _burst.turn()
        written = await asyncio.to_thread(_write, rt.kube, obj, desired, plan)
    plan = written.plan
    if written.secret is not None:
        _index[(ns, name)] = written.secret
    if plan.action != "none":
        metrics.SECRET_WRITES.labels(plan.action).inc()
        log.info("%s: Secret %s (%s)", _what(obj),
                 {"create": "created", "patch": "updated", "recreate": "recreated"}[
                     plan.action], ", ".join(plan.changed))
    return plan.action


def _status(obj: Mapping[str, Any], ok: bool, reason: str, message: str) -> dict[str, Any] | None:
    """The status to write, or None when it already says this."""
    meta = obj.get("metadata") or {}
    return status_patch(obj.get("status"), generation=meta.get("generation"),
                        condition=synced_condition(ok, reason, message))


def lane() -> Lane:
    """The status/Event lane (created on first use, inside the running loop)."""
    global _lane
    if _lane is None:
        _lane = Lane(_lock, _schedule_retry)
    return _lane


def _write_status(kube: Kube, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    group, version, plural = _gvp(obj)
    kube.patch_custom_status(group, version, plural, meta.get("namespace"),
                             str(meta.get("name")), status)


def _post_event(kube: Kube, obj: Mapping[str, Any], spec: EventSpec) -> None:
    reason, message, warning = spec
    kube.create_event(obj, reason=reason, message=message,
                      type_="Warning" if warning else "Normal")


def _queue() -> asyncio.Queue[Ref]:
    global _retries
    if _retries is None:
        _retries = asyncio.Queue()
    return _retries


async def background_workers(n: int = 2) -> None:
    """Writes statuses and Events (the lane) and runs due retries. Started before kopf, so
    kopf never waits for these at shutdown (it waits for every task spawned after its own
    start)."""
    rt = get_runtime()

    async def retrier() -> None:
        queue = _queue()
        while True:
            ref = await queue.get()
            try:
                _retry_pending.discard(ref)
                await reconcile_ref(ref)
            except Exception:  # a bug must not kill the worker
                log.exception("retry of %s/%s failed", ref[1], ref[2])

    await asyncio.gather(*lane().writers(rt.kube, _write_status, _post_event),
                         *(retrier() for _ in range(n)))


async def reconcile(obj: Mapping[str, Any], *, restored: bool = False) -> None:
    """One SealedSecret: desired Secret, apply; status and Event go to the lane. Never
    raises."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return
    rt, books = get_runtime(), lane()
    ref = _ref(obj)
    async with _lock(ref[1], ref[2]):
        started = time.perf_counter()
        try:
            desired = await _desired(rt, obj)
            message = f"Secret {desired['metadata']['name']} is in sync"
            action = await _apply(rt, obj, desired)
            rt.retry_on_new_key.discard(ref)
            _failed.pop(ref, None)
            _attempts.pop(ref, None)
            event: EventSpec | None = None
            if action != "none":
                if restored:
                    metrics.SECRETS_RESTORED.inc()
                verb = "restored" if restored else {
                    "create": "created", "patch": "updated", "recreate": "recreated"}[action]
                event = (rs.REASON_UNSEALED, f"Secret {desired['metadata']['name']} {verb}",
                         False)
            books.put(ref, obj, _status(obj, True, rs.REASON_UNSEALED, message), event)
            metrics.UNSEAL_TOTAL.labels("ok").inc()
        except rs.SealFailure as exc:
            metrics.UNSEAL_TOTAL.labels("error").inc()
            metrics.UNSEAL_ERRORS.labels(exc.reason).inc()
            if exc.reason in _RETRY_REASONS:
                rt.retry_on_new_key.add(ref)
            _failed[ref] = exc.reason
            log.warning("%s: %s: %s", _what(obj), exc.reason, exc.message)
            status = _status(obj, False, exc.reason, exc.message)
            if status is not None:  # the Event only with a changed status: no repeats
                books.put(ref, obj, status, (exc.reason, exc.message, True))
        except KubeInvalid as exc:  # the API server refuses the Secret: only a new spec helps
            metrics.UNSEAL_TOTAL.labels("error").inc()
            metrics.UNSEAL_ERRORS.labels(exc.reason).inc()
            _failed[ref] = exc.reason
            log.warning("%s: the API server refused the Secret (%s): %s", _what(obj),
                        exc.reason, exc.message)
            status = _status(obj, False, exc.reason, exc.message)
            if status is not None:
                books.put(ref, obj, status, (exc.reason, exc.message, True))
        except KubeError as exc:
            metrics.UNSEAL_TOTAL.labels("error").inc()
            metrics.UNSEAL_ERRORS.labels(exc.reason).inc()
            log.warning("%s: API error, will retry: %s", _what(obj), exc.message)
            status = _status(obj, False, exc.reason, exc.message)
            if status is not None:  # the Event only with a changed status: no repeats
                books.put(ref, obj, status, (exc.reason, exc.message, True))
            _schedule_retry(ref)
        except SecretSyncError as exc:  # anything else typed: report, do not crash
            metrics.UNSEAL_TOTAL.labels("error").inc()
            metrics.UNSEAL_ERRORS.labels(exc.reason).inc()
            log.warning("%s: %s: %s", _what(obj), exc.reason, exc.message)
        finally:
            metrics.UNSEAL_SECONDS.observe(time.perf_counter() - started)


async def reconcile_ref(ref: Ref, *, restored: bool = False) -> None:
    """Re-read a SealedSecret and reconcile it (retries, Secret watch, key changes)."""
    rt = get_runtime()
    group, _, version = ref[0].partition("/")
    try:
        obj = await asyncio.to_thread(rt.kube.get_custom, group, version, api.PLURAL_SEALED,
                                      ref[1], ref[2])
    except KubeError as exc:
        log.warning("cannot read %s %s/%s: %s", ref[0], ref[1], ref[2], exc.message)
        _schedule_retry(ref)
        return
    if obj is None:  # deleted (maybe while no watch ran): forget what it decrypted to
        _failed.pop(ref, None)
        for uid in [u for u, c in _cache.items()
                    if _secret_ref(c.desired) == ref]:
            del _cache[uid]
        return
    await reconcile(obj, restored=restored)


def _secret_ref(secret: Mapping[str, Any]) -> Ref | None:
    """The SealedSecret a (desired) Secret belongs to, from its controller ownerReference."""
    owner = controller_ref(secret)
    if owner is None:
        return None
    return _owner_ref(owner, (secret.get("metadata") or {}).get("namespace"))


def _owner_ref(owner: Mapping[str, Any], namespace: object) -> Ref:
    """A controller ownerReference of a Secret in ``namespace`` as the owner's Ref."""
    return (str(owner.get("apiVersion")), str(namespace), str(owner.get("name")))


def _schedule_retry(ref: Ref) -> None:
    """Retry after an API error, backing off 2 s -> 60 s while the errors last."""
    if ref in _retry_pending:
        return
    attempt = _attempts.get(ref, 0)
    _attempts[ref] = attempt + 1
    delay = _TRANSIENT_BACKOFF[min(attempt, len(_TRANSIENT_BACKOFF) - 1)]
    _retry_pending.add(ref)
    asyncio.get_running_loop().call_later(delay, _queue().put_nowait, ref)


async def retry_after_key_change() -> None:
    rt = get_runtime()
    metrics.KEY_COUNT.set(len(rt.keys.registry))
    for ref in list(rt.retry_on_new_key):
        await reconcile_ref(ref)


async def requeue_failed(interval: float) -> None:
    """Re-try failed objects now and then: an unmanaged Secret may have been handed over
    (annotations on a Secret we do not manage are invisible to our label-filtered watch), a
    template fixed elsewhere, a key imported. A retry that fails the same way writes nothing."""
    while True:
        await asyncio.sleep(interval)
        for ref, reason in list(_failed.items()):
            if reason not in _FINAL_REASONS:  # those wait for a new spec (a watch event)
                await reconcile_ref(ref)


# --- kopf handlers --------------------------------------------------------------------------


async def on_sealed_event(event: Mapping[str, Any], body: Any, **_: Any) -> None:
    obj = _plain(event.get("object", body))
    meta = obj.get("metadata") or {}
    uid = str(meta.get("uid"))
    synced_version = _synced_at_start.pop(uid, None) if _synced_at_start else None
    if event.get("type") == "DELETED":
        ref = _ref(obj)
        _cache.pop(uid, None)
        _final.pop(uid, None)
        _prefetched.pop(uid, None)
        get_runtime().retry_on_new_key.discard(ref)
        _failed.pop(ref, None)
        _locks.pop((ref[1], ref[2]), None)
        lane().forget(ref)
        return  # the Secret goes with it: ownerReference garbage collection
    if synced_version == str(meta.get("resourceVersion")):
        return  # kopf's listing of the very version the initial sync reconciled
    await reconcile(obj)


async def on_secret_event(event: Mapping[str, Any], body: Any, **_: Any) -> None:
    """Self-healing: a managed Secret was deleted or edited -> restore it from its owner."""
    secret = _plain(event.get("object", body))
    ref = controller_ref(secret)
    if ref is None or ref.get("kind") != api.KIND_SEALED:
        return
    group = str(ref.get("apiVersion", "")).partition("/")[0]
    if group not in SEALED_GROUPS:
        return
    meta = secret.get("metadata") or {}
    cached = _cache.get(str(ref.get("uid")))
    kind = event.get("type")
    where = (str(meta.get("namespace")), str(meta.get("name")))
    if kind == "DELETED":
        _index.pop(where, None)
    else:
        _index[where] = secret
    if kind != "DELETED":
        if cached is None:
            if kind is None:
                return  # initial listing: the SealedSecret's own initial event covers it
        elif plan_secret(secret, cached.desired).action == "none":
            return  # our own write, or an unrelated change we do not track
    owner_ref = _owner_ref(ref, meta.get("namespace"))
    log.info("Secret %s/%s was %s; restoring it from its SealedSecret",
             meta.get("namespace"), meta.get("name"),
             "deleted" if kind == "DELETED" else "changed")
    await reconcile_ref(owner_ref, restored=True)


def _plain(body: Any) -> dict[str, Any]:
    """kopf's Body -> a plain dict (kopf bodies are read-only views over the raw dict)."""
    if isinstance(body, dict):
        return body
    raw = getattr(body, "_src", None)
    if isinstance(raw, dict):
        return raw
    return {k: body[k] for k in body}


# --- for the initial sync (sealed_start) ------------------------------------------------------

secret_ref = _secret_ref


def decrypt_ahead(rt: Runtime, obj: Mapping[str, Any], key: tuple[Any, ...]) -> None:
    """Start decrypting ``obj`` on the pool; its reconcile picks the result up (by uid and
    cache key, so an object changed meanwhile is simply decrypted again)."""
    uid = str((obj.get("metadata") or {}).get("uid"))
    _prefetched[uid] = (key, rt.pool.submit(rs.unseal, obj, rt.keys.registry))


def replace_index(fresh: Mapping[tuple[str, str], dict[str, Any]]) -> None:
    """The managed Secrets as just listed replace the index (entries of Secrets deleted
    meanwhile go)."""
    global _index_ready
    _index.clear()
    _index.update(fresh)
    _index_ready = True


def mark_synced_at_start(uid: str, resource_version: str) -> None:
    _synced_at_start[uid] = resource_version


def desired_by_uid() -> dict[str, Mapping[str, Any]]:
    return {uid: cached.desired for uid, cached in _cache.items()}


def forget_secret(ref: Ref) -> None:
    """Drop the index entry of ``ref``'s Secret (same namespace and name): its next
    reconcile reads the Secret from the API server."""
    _index.pop((ref[1], ref[2]), None)


def index() -> Mapping[tuple[str, str], Mapping[str, Any]]:
    return _index


def unsettled() -> set[Ref]:
    """Objects whose last reconcile failed, or that wait for a retry."""
    return set(_failed) | _retry_pending


def register(registry: Any, *, bitnami: bool = False) -> None:
    import kopf

    SEALED_GROUPS.update(sealed_groups(bitnami))
    for group, version in SEALED_GROUPS.items():
        kopf.on.event(group, version, api.PLURAL_SEALED, registry=registry)(on_sealed_event)
    kopf.on.event("", "v1", "secrets", registry=registry,
                  labels={api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE})(on_secret_event)
    rt = get_runtime()
    rt.keys.on_change(retry_after_key_change)
    metrics.KEY_COUNT.set(len(rt.keys.registry))
