"""Resync: repair what no watch event reported, from one LIST of the managed Secrets.

Why: a watch cannot report a deletion it never saw. kopf lists again whenever a watch has to
start over (the API server restarted, the watch's resourceVersion expired, the connection
broke), and an object deleted in between simply is not in the new listing -- no DELETED
event ever comes. Likewise a Secret deleted between the SealedSecret engine's initial sync
and kopf's own first listing. Without a resync such a Secret stays missing (and the engines'
indexes keep believing in it) until its owner changes.

So shortly after kopf starts, and then every ``--resync-interval``, the managed Secrets are
listed once and each engine (``Runtime.resyncers``: the SealedSecret engine always, the
ExternalSecret engine when loaded) compares them with what it expects and repairs the
difference. Nothing is written when all is in sync; the cost is one LIST (in pages).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from secretsync import api
from secretsync.controller import metrics
from secretsync.controller.runtime import Runtime
from secretsync.errors import KubeError
from secretsync.kube import Kube

log = logging.getLogger("secretsync.resync")

Listed = dict[tuple[str, str], dict[str, Any]]


# Secrets per LIST request: in a cluster with tens of thousands of managed Secrets, one
# answer holding them all (with their data) weighs on the API server and on our peak memory.
PAGE_SIZE = 500


def list_managed(kube: Kube, namespace: str | None) -> Listed:
    """Every Secret labelled as ours, by (namespace, name): one LIST, in pages (sync)."""
    out: Listed = {}
    for secret in kube.list_secrets(namespace, api.MANAGED_SELECTOR, page_size=PAGE_SIZE):
        meta = secret.get("metadata") or {}
        out[(str(meta.get("namespace")), str(meta.get("name")))] = secret
    return out


async def resync_once(rt: Runtime, namespace: str | None) -> int:
    """One LIST, handed to every engine; returns how many Secrets they repaired."""
    listed = await asyncio.to_thread(list_managed, rt.kube, namespace)
    repaired = 0
    for resyncer in list(rt.resyncers):
        repaired += await resyncer(listed)
    metrics.RESYNCS.inc()
    metrics.RESYNC_REPAIRS.inc(repaired)
    log.debug("resync: %d managed Secrets listed, %d to restore", len(listed), repaired)
    return repaired


async def resync_loop(rt: Runtime, namespace: str | None, ready: asyncio.Event,
                      first_after: float, interval: float) -> None:
    """``resync_once`` ``first_after`` seconds after kopf started (its watches have listed by
    then), then every ``interval`` seconds (0: only that first one). An API error waits for
    the next round; a bug in an engine is logged by type and does not stop the loop."""
    await ready.wait()
    delay = first_after
    while True:
        await asyncio.sleep(delay)
        try:
            await resync_once(rt, namespace)
        except KubeError as exc:
            log.warning("resync of managed Secrets failed: %s", exc.message)
        except Exception as exc:  # never the values: an engine's bug, by type
            log.error("resync failed: %s", type(exc).__name__)
        if interval <= 0:
            return
        delay = interval
