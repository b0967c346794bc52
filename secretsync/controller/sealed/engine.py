"""The SealedSecret engine: one object owning everything the SealedSecret side of the
controller remembers, and the reconcile that turns a SealedSecret into its Secret.

Thin by design: every decision is made by ``secretsync.reconcile.sealed`` (what the Secret
should be, why it cannot be) and ``secretsync.reconcile.secrets`` (may we touch the existing
Secret, what minimal patch, does the status need a write). The engine does the I/O around
them: API calls in threads (``writes``), RSA on the shared pool, status and Events through
its lane, metrics. The kopf handlers (``handlers``) only hand events to it.

Decrypted values are cached per SealedSecret generation so that the Secret watch can tell
"our own write" from "an edit to undo" without another RSA operation; a failure only a new
spec can fix (a template that hit a render bound, an invalid spec) is cached the same way,
so it is not rendered again until the spec changes.
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

from secretsync import api, clock
from secretsync.controller import metrics
from secretsync.controller.runtime import Runtime
from secretsync.controller.sealed import writes
from secretsync.controller.sealed.burst import Burst
from secretsync.controller.sealed.lane import EventSpec, Lane
from secretsync.controller.sealed.writes import Ref, ref_of, what
from secretsync.errors import KubeError, KubeInvalid, SecretSyncError
from secretsync.reconcile import sealed as rs
from secretsync.reconcile.secrets import controller_ref, plan_secret

log = logging.getLogger("secretsync.sealed")

_RETRY_REASONS = frozenset({rs.REASON_DECRYPT_FAILED, rs.REASON_NO_KEYS, rs.REASON_SCOPE_MISMATCH})
# Failures that only a new spec can change: not retried, not even re-rendered, until then
_FINAL_REASONS = frozenset({rs.REASON_INVALID_TEMPLATE, rs.REASON_INVALID_SPEC})
_TRANSIENT_BACKOFF = (2.0, 5.0, 10.0, 30.0, 60.0)
_VERBS = {"create": "created", "patch": "updated", "recreate": "recreated"}


def sealed_groups(bitnami: bool) -> dict[str, str]:
    """group -> version of the SealedSecret kinds to reconcile."""
    groups = {api.GROUP: api.VERSION}
    if bitnami:
        groups[api.BITNAMI_GROUP] = "v1alpha1"
    return groups


def secret_ref(secret: Mapping[str, Any]) -> Ref | None:
    """The SealedSecret a (desired) Secret belongs to, from its controller ownerReference."""
    owner = controller_ref(secret)
    if owner is None:
        return None
    return owner_ref(owner, (secret.get("metadata") or {}).get("namespace"))


def owner_ref(owner: Mapping[str, Any], namespace: object) -> Ref:
    """A controller ownerReference of a Secret in ``namespace`` as the owner's Ref."""
    return (str(owner.get("apiVersion")), str(namespace), str(owner.get("name")))


@dataclass
class _Cached:
    key: tuple[Any, ...]
    desired: dict[str, Any]


class SealedEngine:
    """SealedSecrets -> Secrets for the kinds in ``groups`` (ours, and Bitnami's in compat
    mode), with the runtime's API client, keys and decryption pool."""

    def __init__(self, rt: Runtime, groups: Mapping[str, str]) -> None:
        self.rt = rt
        self.groups = dict(groups)
        self.cache: dict[str, _Cached] = {}  # uid -> desired Secret of its current spec
        # uid -> (cache key, its final failure), see the module docstring
        self.final: dict[str, tuple[tuple[Any, ...], rs.SealFailure]] = {}
        # uid -> (cache key, decryption started before kopf ran): see start.prefetch
        self.prefetched: dict[str, tuple[tuple[Any, ...], Future[dict[str, Any]]]] = {}
        self.failed: dict[Ref, str] = {}  # objects whose last reconcile failed -> reason
        # objects whose last reconcile failed for a reason a new key could fix
        self.retry_on_new_key: set[Ref] = set()
        # (namespace, name) -> the managed Secret as last seen (LIST, then the Secret watch)
        self.index: dict[tuple[str, str], dict[str, Any]] = {}
        self.index_ready = False
        # uid -> resourceVersion reconciled by the initial sync: kopf's listing of that same
        # version is skipped, once
        self.synced_at_start: dict[str, str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._retry_pending: set[Ref] = set()
        self._attempts: dict[Ref, int] = {}  # consecutive API-error retries (backoff)
        self._retries: asyncio.Queue[Ref] | None = None
        self._lane: Lane | None = None
        self._burst = Burst()  # Secret writes grouped while a backlog decrypts

    # --- state the start and the resync read ---------------------------------------------

    def unsettled(self) -> set[Ref]:
        """Objects whose last reconcile failed, or that wait for a retry."""
        return set(self.failed) | self._retry_pending

    def desired_by_uid(self) -> dict[str, Mapping[str, Any]]:
        return {uid: cached.desired for uid, cached in self.cache.items()}

    def replace_index(self, fresh: Mapping[tuple[str, str], dict[str, Any]]) -> None:
        """The managed Secrets as just listed replace the index."""
        self.index.clear()
        self.index.update(fresh)
        self.index_ready = True

    def decrypt_ahead(self, obj: Mapping[str, Any], key: tuple[Any, ...]) -> None:
        """Start decrypting ``obj`` on the pool; its reconcile picks the result up (by uid and
        cache key, so an object changed meanwhile is simply decrypted again)."""
        uid = str((obj.get("metadata") or {}).get("uid"))
        self.prefetched[uid] = (key, self.rt.pool.submit(rs.unseal, obj, self.rt.keys.registry))

    def forget(self, obj: Mapping[str, Any]) -> None:
        """A deleted SealedSecret: drop everything remembered about it (its Secret goes
        with it, by ownerReference garbage collection)."""
        uid, ref = str((obj.get("metadata") or {}).get("uid")), ref_of(obj)
        self.cache.pop(uid, None)
        self.final.pop(uid, None)
        self.prefetched.pop(uid, None)
        self.retry_on_new_key.discard(ref)
        self.failed.pop(ref, None)
        self._locks.pop((ref[1], ref[2]), None)
        self.lane.forget(ref)

    # --- the reconcile -------------------------------------------------------------------

    def _lock(self, ns: str, name: str) -> asyncio.Lock:
        lock = self._locks.get((ns, name))
        if lock is None:
            lock = self._locks[(ns, name)] = asyncio.Lock()
        return lock

    async def _desired(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Decrypt (or reuse the cached result for this generation) and render; SealFailure.

        One pool job per object (decode, every item's RSA operation, render): a hand-off per
        item cost the event loop more than the items' parallelism gained -- with many objects
        queued the pool is busy anyway, and one object's items are milliseconds apart."""
        # spec changes bump the generation; scope and hint live in metadata. A new key cannot
        # change what an item decrypts to, so successes stay valid across key changes.
        key = rs.cache_key(obj)
        uid = str((obj.get("metadata") or {}).get("uid"))
        cached = self.cache.get(uid)
        if cached is not None and cached.key == key:
            return cached.desired
        final = self.final.get(uid)
        if final is not None and final[0] == key:
            raise final[1]
        rt = self.rt
        early = self.prefetched.pop(uid, None)
        with self.lane.working(), self._burst.expecting():
            desired = None
            if early is not None and early[0] == key:
                with contextlib.suppress(rs.SealFailure):  # a failure: decide again, keys now
                    desired = await asyncio.wrap_future(early[1])
            if desired is None:
                try:
                    desired = await asyncio.get_running_loop().run_in_executor(
                        rt.pool, rs.unseal, obj, rt.keys.registry)
                except rs.SealFailure as exc:
                    if exc.reason in _FINAL_REASONS:
                        self.final[uid] = (key, exc)
                    raise
        self.final.pop(uid, None)
        metrics.ITEMS_DECRYPTED.inc(len((obj.get("spec") or {}).get("encryptedData") or {}))
        self.cache[uid] = _Cached(key, desired)
        return desired

    async def _apply(self, obj: Mapping[str, Any], desired: dict[str, Any]) -> str:
        """Bring the Secret in line; returns the action taken ("none" when nothing changed).

        The first look uses the index of managed Secrets (seeded by one LIST at start, kept
        current by the Secret watch), so the common cases cost one thread hand-off for the
        write, or nothing at all; a stale index only means a 409, after which the Secret is
        read for real (in the same thread)."""
        kube = self.rt.kube
        ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        existing = self.index.get((ns, name)) if self.index_ready else await asyncio.to_thread(
            kube.get_secret, ns, name)
        writes.check_owner(existing, obj)
        plan = plan_secret(existing, desired)
        if plan.action == "none":
            return "none"
        with self.lane.working():
            await self._burst.turn()
            written = await asyncio.to_thread(writes.write_secret, kube, obj, desired, plan)
        plan = written.plan
        if written.secret is not None:
            self.index[(ns, name)] = written.secret
        if plan.action != "none":
            metrics.SECRET_WRITES.labels(plan.action).inc()
            log.info("%s: Secret %s (%s)", what(obj), _VERBS[plan.action],
                     ", ".join(plan.changed))
        return plan.action

    @staticmethod
    def _status(obj: Mapping[str, Any], ok: bool, reason: str,
                message: str) -> dict[str, Any] | None:
        """The status to write, or None when it already says this."""
        return rs.status_update(obj, ok, reason, message, now=clock.rfc3339())

    @property
    def lane(self) -> Lane:
        """The status/Event lane (created on first use, inside the running loop)."""
        if self._lane is None:
            self._lane = Lane(self._lock, self.schedule_retry)
        return self._lane

    async def reconcile(self, obj: Mapping[str, Any], *, restored: bool = False) -> None:
        """One SealedSecret: desired Secret, apply; status and Event go to the lane. Never
        raises."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        books, ref = self.lane, ref_of(obj)
        async with self._lock(ref[1], ref[2]):
            started = time.perf_counter()
            try:
                desired = await self._desired(obj)
                message = f"Secret {desired['metadata']['name']} is in sync"
                action = await self._apply(obj, desired)
                self.retry_on_new_key.discard(ref)
                self.failed.pop(ref, None)
                self._attempts.pop(ref, None)
                event: EventSpec | None = None
                if action != "none":
                    if restored:
                        metrics.SECRETS_RESTORED.inc()
                    verb = "restored" if restored else _VERBS[action]
                    event = (rs.REASON_UNSEALED,
                             f"Secret {desired['metadata']['name']} {verb}", False)
                books.put(ref, obj, self._status(obj, True, rs.REASON_UNSEALED, message), event)
                metrics.UNSEAL_TOTAL.labels("ok").inc()
            except rs.SealFailure as exc:
                if exc.reason in _RETRY_REASONS:
                    self.retry_on_new_key.add(ref)
                self.failed[ref] = exc.reason
                self._report_failure(obj, exc, "")
            except KubeInvalid as exc:  # the API server refuses the Secret: only a new spec
                self.failed[ref] = exc.reason
                self._report_failure(obj, exc, "the API server refused the Secret; ")
            except KubeError as exc:  # not failed for good: retried with backoff
                self._report_failure(obj, exc, "API error, will retry; ")
                self.schedule_retry(ref)
            except SecretSyncError as exc:  # anything else typed: report, do not crash
                metrics.UNSEAL_TOTAL.labels("error").inc()
                metrics.UNSEAL_ERRORS.labels(exc.reason).inc()
                log.warning("%s: %s: %s", what(obj), exc.reason, exc.message)
            finally:
                metrics.UNSEAL_SECONDS.observe(time.perf_counter() - started)

    def _report_failure(self, obj: Mapping[str, Any], exc: SecretSyncError, how: str) -> None:
        """Count, log and report a failure: the status with the reason, and a Warning Event
        only when the status changes (no repeats on retries)."""
        ref = ref_of(obj)
        metrics.UNSEAL_TOTAL.labels("error").inc()
        metrics.UNSEAL_ERRORS.labels(exc.reason).inc()
        log.warning("%s: %s%s: %s", what(obj), how, exc.reason, exc.message)
        status = self._status(obj, False, exc.reason, exc.message)
        if status is not None:
            self.lane.put(ref, obj, status, (exc.reason, exc.message, True))

    async def reconcile_ref(self, ref: Ref, *, restored: bool = False) -> None:
        """Re-read a SealedSecret and reconcile it (retries, Secret watch, key changes)."""
        group, _, version = ref[0].partition("/")
        try:
            obj = await asyncio.to_thread(self.rt.kube.get_custom, group, version,
                                          api.PLURAL_SEALED, ref[1], ref[2])
        except KubeError as exc:
            log.warning("cannot read %s %s/%s: %s", ref[0], ref[1], ref[2], exc.message)
            self.schedule_retry(ref)
            return
        if obj is None:  # deleted (maybe while no watch ran): forget what it decrypted to
            self.failed.pop(ref, None)
            for uid in [u for u, c in self.cache.items() if secret_ref(c.desired) == ref]:
                del self.cache[uid]
            return
        await self.reconcile(obj, restored=restored)

    # --- retries -------------------------------------------------------------------------

    def _queue(self) -> asyncio.Queue[Ref]:
        if self._retries is None:
            self._retries = asyncio.Queue()
        return self._retries

    def schedule_retry(self, ref: Ref) -> None:
        """Retry after an API error, backing off 2 s -> 60 s while the errors last."""
        if ref in self._retry_pending:
            return
        attempt = self._attempts.get(ref, 0)
        self._attempts[ref] = attempt + 1
        delay = _TRANSIENT_BACKOFF[min(attempt, len(_TRANSIENT_BACKOFF) - 1)]
        self._retry_pending.add(ref)
        asyncio.get_running_loop().call_later(delay, self._queue().put_nowait, ref)

    async def retry_after_key_change(self) -> None:
        metrics.KEY_COUNT.set(len(self.rt.keys.registry))
        for ref in list(self.retry_on_new_key):
            await self.reconcile_ref(ref)

    async def requeue_failed(self, interval: float) -> None:
        """Re-try failed objects now and then: an unmanaged Secret may have been handed over
        (annotations on a Secret we do not manage are invisible to our label-filtered watch),
        a key imported. A retry that fails the same way writes nothing. Failures only a new
        spec can fix wait for it (a watch event)."""
        while True:
            await asyncio.sleep(interval)
            for ref, reason in list(self.failed.items()):
                if reason not in _FINAL_REASONS:
                    await self.reconcile_ref(ref)

    async def background_workers(self, n: int = 2) -> None:
        """Writes statuses and Events (the lane) and runs due retries. Started before kopf,
        so kopf never waits for these at shutdown (it waits for every task spawned after its
        own start)."""

        async def retrier() -> None:
            queue = self._queue()
            while True:
                ref = await queue.get()
                try:
                    self._retry_pending.discard(ref)
                    await self.reconcile_ref(ref)
                except Exception:  # a bug must not kill the worker
                    log.exception("retry of %s/%s failed", ref[1], ref[2])

        await asyncio.gather(
            *self.lane.writers(self.rt.kube, writes.write_status, writes.post_event),
            *(retrier() for _ in range(n)))
