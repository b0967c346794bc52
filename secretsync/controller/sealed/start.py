"""The cold start of the SealedSecret engine: every SealedSecret reconciled before kopf watches.

Why: on a cold start (a restart, a fail-over, a switch from Bitnami's controller) every
SealedSecret needs its Secret at once, and workloads wait for them. Left to kopf, its initial
listing arrives as one event per object, and kopf's own per-event machinery (bodies, loggers,
causes, handler matching) costs the event loop several times our reconcile, on the cores the
RSA work needs; each Secret we then create comes back through the Secret watch as one more event.
So the engine lists the SealedSecrets itself (``prefetch``: the decryption starts at once),
reconciles every one with the same ``SealedEngine.reconcile`` kopf's handler calls, and starts
kopf afterwards. Measured by ``bench/bench_unseal.py`` (1,000 SealedSecrets x 4 items, two
shared cores): the last Secret ~11 % sooner, the last status ~8 % sooner, the event loop's CPU
halved.

Nothing changed meanwhile is missed: kopf lists everything when it starts; an object still at
the version the initial sync reconciled is skipped once (``handlers.on_sealed_event``), any other
is reconciled as usual. No watch sees a managed Secret deleted or edited during the sync, so
the managed Secrets are listed again afterwards and those no longer as desired are restored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from secretsync import api
from secretsync.controller.resync import list_managed
from secretsync.controller.sealed.engine import SealedEngine, secret_ref
from secretsync.controller.sealed.writes import Ref
from secretsync.errors import KubeError
from secretsync.reconcile import sealed as rs
from secretsync.reconcile.secrets import controller_ref, plan_secret

log = logging.getLogger("secretsync.sealed")


def prefetch(engine: SealedEngine, namespace: str | None) -> list[dict[str, Any]]:
    """List the SealedSecrets and start decrypting each on the pool (sync, in a thread);
    returns the objects queued, for ``initial_sync``.

    Started first thing after the keys are loaded (kopf is imported only after the initial
    sync), so the RSA work has every core from the start. Best effort: a failed LIST (e.g.
    the Bitnami CRD not installed) leaves those objects to kopf, as does an object whose spec
    cannot be read (kopf's event reports it)."""
    queued: list[dict[str, Any]] = []
    for group, version in engine.groups.items():
        try:
            items = engine.rt.kube.list_custom(group, version, api.PLURAL_SEALED, namespace)
        except KubeError as exc:
            log.debug("no prefetch of %s/%s: %s", group, version, exc.message)
            continue
        for obj in items:
            meta = obj.get("metadata") or {}
            if meta.get("deletionTimestamp") or not meta.get("uid"):
                continue
            try:
                key = rs.cache_key(obj)
            except rs.SealFailure:
                continue
            engine.decrypt_ahead(obj, key)
            queued.append(obj)
    return queued


def sealed_owned(listed: Mapping[tuple[str, str], dict[str, Any]]
                 ) -> dict[tuple[str, str], dict[str, Any]]:
    """Pure: the Secrets of ``listed`` whose controller is a SealedSecret."""
    out = {}
    for where, secret in listed.items():
        ref = controller_ref(secret)
        if ref is not None and ref.get("kind") == api.KIND_SEALED:
            out[where] = secret
    return out


def seed_index(engine: SealedEngine, namespace: str | None) -> None:
    """One LIST of the managed Secrets replaces the index (sync, in a thread): before the
    initial sync, and again after it (dropping Secrets deleted meanwhile)."""
    engine.replace_index(sealed_owned(list_managed(engine.rt.kube, namespace)))


def to_restore(desired: Mapping[str, Mapping[str, Any]],
               listed: Mapping[tuple[str, str], Mapping[str, Any]],
               unsettled: set[Ref]) -> list[Ref]:
    """Pure: the SealedSecrets whose Secret is gone or no longer as desired.

    ``desired``: SealedSecret uid -> the Secret it should have (known for every object that
    decrypted; its controller ownerReference names the SealedSecret); ``listed``: the managed
    Secrets as just listed; ``unsettled``: objects whose reconcile failed or is due for a
    retry -- those keep their own retry and their condition (their Secret is missing or
    foreign by design: reconciling them here would only repeat the failure)."""
    refs = []
    for want in desired.values():
        ref = secret_ref(want)
        if ref is None or ref in unsettled:
            continue
        meta = want["metadata"]
        have = listed.get((meta["namespace"], meta["name"]))
        if have is None or plan_secret(have, dict(want)).action != "none":
            refs.append(ref)
    return refs


async def restore(engine: SealedEngine, listed: Mapping[tuple[str, str], dict[str, Any]]
                  ) -> int:
    """The SealedSecret engine's part of a resync (``controller.resync``): restore every
    Secret of ours that ``listed`` (all managed Secrets, just listed) shows gone or no longer
    as desired; returns how many. The index entry of each is dropped first, so the reconcile
    reads the Secret for real (a create answered 409 re-reads it) instead of trusting it."""
    refs = to_restore(engine.desired_by_uid(), sealed_owned(listed), engine.unsettled())
    await _restore_each(engine, refs, "is gone or changed (resync)", reread=True)
    return len(refs)


async def _restore_each(engine: SealedEngine, refs: list[Ref], why: str, *,
                        reread: bool) -> None:
    """Reconcile each of ``refs`` as a restore, all at once as the initial sync does (the
    thread pool bounds the work in flight: after a mass deletion during an outage, one
    after the other cost a GET and a create round trip per Secret in a row); ``reread``:
    drop its index entry first (the index may be stale; after ``seed_index`` it is not)."""
    for ref in refs:
        log.info("Secret of %s %s/%s %s; restoring it", ref[0], ref[1], ref[2], why)
        if reread:
            engine.index.pop((ref[1], ref[2]), None)
    await asyncio.gather(*(engine.reconcile_ref(ref, restored=True) for ref in refs))


async def initial_sync(engine: SealedEngine, namespace: str | None,
                       listed: list[dict[str, Any]]) -> None:
    """Reconcile ``listed`` (from ``prefetch``), then restore what changed meanwhile.
    Never raises but for cancellation (a stop, or lost leadership)."""
    started = time.perf_counter()
    for obj in listed:
        meta = obj.get("metadata") or {}
        engine.synced_at_start[str(meta.get("uid"))] = str(meta.get("resourceVersion"))
    await asyncio.gather(*(engine.reconcile(obj) for obj in listed))
    try:
        await asyncio.to_thread(seed_index, engine, namespace)
    except KubeError as exc:  # the index stays as our writes left it; the watch takes over
        log.warning("initial sync: cannot list the managed Secrets again: %s", exc.message)
        return
    await _restore_each(engine, to_restore(engine.desired_by_uid(), engine.index,
                                           engine.unsettled()),
                        "changed during the initial sync", reread=False)
    log.info("initial sync: %d SealedSecrets in %.1fs", len(listed),
             time.perf_counter() - started)
