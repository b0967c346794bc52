"""The ClusterExternalSecret engine: indexes of ClusterExternalSecrets, Namespaces and
ExternalSecrets, and one worker that reconciles a ClusterExternalSecret at a time.

kopf feeds events in (``handlers``); every decision is ``reconcile.cluster_external``'s. A
ClusterExternalSecret is reconciled when it is new or its spec changed, when a Namespace is
added, removed or relabelled, when an ExternalSecret of its name changes other than in its
status, and every ``refreshTime`` (default 1 h). The Namespace and ExternalSecret indexes are
listed once before kopf watches (``seed``), so a first reconcile never takes an unlisted
namespace for an unselected one (and deletes its ExternalSecret).

The ExternalSecrets it writes are then synced by the ExternalSecret engine like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from secretsync import api, clock
from secretsync.controller.runtime import kube_call
from secretsync.errors import InvalidInput, KubeError, KubeNotFound
from secretsync.kube import Kube
from secretsync.reconcile import cluster_external as cx
from secretsync.reconcile.external_spec import parse_duration
from secretsync.reconcile.status import status_patch

log = logging.getLogger("secretsync.clusterexternal")

Key = tuple[str, str]
DEFAULT_REFRESH = 3600.0
RETRY = 30.0  # seconds before a ClusterExternalSecret with failed writes is tried again


class ClusterExternalEngine:
    """ClusterExternalSecrets: the indexes, the queue and the one worker."""

    def __init__(self, kube: Kube, *, scope: str | None = None) -> None:
        self.kube = kube
        self.scope = scope  # the one namespace a namespaced controller watches
        self.objects: dict[str, dict[str, Any]] = {}
        self.namespaces: dict[str, cx.Namespace] = {}
        self.externals: dict[Key, dict[str, Any]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------------
    async def seed(self) -> None:
        """List Namespaces and ExternalSecrets before the first reconcile."""
        if self.scope is not None:
            one = await kube_call(self.kube.get_namespace, self.scope)
            found = [one] if one else []
        else:
            found = (await kube_call(self.kube.request, "GET", "/api/v1/namespaces",
                                     what="list Namespaces")).get("items") or []
        for ns in found:
            self.on_namespace("ADDED", ns, enqueue=False)
        for es in await kube_call(self.kube.list_custom, api.GROUP, api.VERSION,
                                  api.PLURAL_EXTERNAL, self.scope):
            self.on_external("ADDED", es, enqueue=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._worker(), name="cluster-external")

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # --- events in ----------------------------------------------------------------------------
    def on_cluster_external(self, type_: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        if type_ == "DELETED":
            self.objects.pop(name, None)
            timer = self._timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            return  # its ExternalSecrets go with it (owner references: garbage collection)
        old = self.objects.get(name)
        self.objects[name] = obj
        ometa = (old or {}).get("metadata") or {}
        if old is None or (ometa.get("uid"), ometa.get("generation")) != (
                meta.get("uid"), meta.get("generation")):
            self.enqueue(name)

    def on_namespace(self, type_: str | None, obj: Mapping[str, Any], *,
                     enqueue: bool = True) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        old = self.namespaces.get(name)
        if type_ == "DELETED":
            self.namespaces.pop(name, None)
        else:
            self.namespaces[name] = cx.Namespace.of(obj)
        if enqueue and old != self.namespaces.get(name) and self.scope in (None, name):
            for ces in list(self.objects):
                self.enqueue(ces)

    def on_external(self, type_: str | None, obj: dict[str, Any], *,
                    enqueue: bool = True) -> None:
        meta = obj.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        old = self.externals.get(key)
        if type_ == "DELETED":
            self.externals.pop(key, None)
        else:
            self.externals[key] = obj
        if not enqueue or (old is not None and type_ != "DELETED" and _shape(old) == _shape(obj)):
            return  # a status write (the ExternalSecret engine's) changes nothing here
        for name, ces in list(self.objects.items()):
            if cx.external_secret_name(ces) == key[1] or cx.owned_by(obj, name) or (
                    old is not None and cx.owned_by(old, name)):
                self.enqueue(name)

    # --- scheduling -----------------------------------------------------------------------------
    def enqueue(self, name: str) -> None:
        if name not in self._queued:
            self._queued.add(name)
            self._queue.put_nowait(name)

    def _schedule(self, name: str, delay: float) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if delay > 0:
            self._timers[name] = asyncio.get_running_loop().call_later(
                delay, self.enqueue, name)

    async def _worker(self) -> None:
        while True:
            name = await self._queue.get()
            self._queued.discard(name)
            ces = self.objects.get(name)
            if ces is None or (ces.get("metadata") or {}).get("deletionTimestamp"):
                continue
            try:
                retry = await self.reconcile(ces)
            except Exception:  # a bug must not stop the worker; the object is retried
                log.exception("ClusterExternalSecret %s: unexpected error", name)
                retry = True
            self._schedule(name, RETRY if retry else _refresh(ces))

    # --- one reconcile --------------------------------------------------------------------------
    async def reconcile(self, ces: dict[str, Any]) -> bool:
        """Write what the plan says, then the status; True when something failed (retry)."""
        meta = ces.get("metadata") or {}
        name = str(meta.get("name"))
        result = cx.plan(ces, self.namespaces, self.externals, scope=self.scope)
        for action in result.actions:
            try:
                await self._write(action)
            except KubeError as exc:
                log.warning("ClusterExternalSecret %s: %s ExternalSecret %s/%s failed: %s",
                            name, action.op, action.namespace, action.name, exc.message)
                result.failed[action.namespace] = exc.message
        if result.invalid is not None:
            log.warning("ClusterExternalSecret %s: %s", name, result.invalid)
        mine = [k for k, es in self.externals.items() if cx.owned_by(es, name)]
        if cx.concerns(ces, result, self.scope, mine):
            await self._status(ces, result)
        return bool(result.failed)

    async def _write(self, action: cx.Action) -> None:
        key: Key = (action.namespace, action.name)
        if action.op == "create":
            assert action.body is not None
            obj = await kube_call(self.kube.create_custom, api.GROUP, api.VERSION,
                                  api.PLURAL_EXTERNAL, action.namespace, action.body)
            self.externals[key] = obj
            log.info("ExternalSecret %s/%s created", *key)
        elif action.op == "patch":
            assert action.patch is not None
            obj = await kube_call(self.kube.patch_custom, api.GROUP, api.VERSION,
                                  api.PLURAL_EXTERNAL, action.namespace, action.name,
                                  action.patch)
            self.externals[key] = obj
            log.info("ExternalSecret %s/%s updated", *key)
        else:
            try:
                await kube_call(self.kube.delete_custom, api.GROUP, api.VERSION,
                                api.PLURAL_EXTERNAL, action.namespace, action.name)
            except KubeNotFound:
                pass
            self.externals.pop(key, None)
            log.info("ExternalSecret %s/%s deleted (namespace no longer selected)", *key)

    async def _status(self, ces: dict[str, Any], result: cx.Plan) -> None:
        meta = ces.get("metadata") or {}
        prev = ces.get("status") or {}
        new = cx.build_status(prev, result, generation=meta.get("generation"),
                              now=clock.rfc3339())
        patch = status_patch(prev, new)
        if patch is None:
            return
        try:
            obj = await kube_call(self.kube.patch_custom_status, api.GROUP, api.VERSION,
                                  api.PLURAL_CLUSTER_EXTERNAL, None, meta.get("name"), patch)
        except KubeError as exc:
            log.warning("ClusterExternalSecret %s: status not written: %s", meta.get("name"),
                        exc.message)
            return
        current = self.objects.get(str(meta.get("name")))
        if current is not None and (current.get("metadata") or {}).get("uid") == meta.get("uid"):
            current["status"] = obj.get("status") or new


def _shape(es: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of an ExternalSecret a ClusterExternalSecret decides on (not its status)."""
    meta = es.get("metadata") or {}
    return (meta.get("uid"), meta.get("generation"), meta.get("labels"),
            meta.get("annotations"), meta.get("ownerReferences"))


def _refresh(ces: Mapping[str, Any]) -> float:
    text = (ces.get("spec") or {}).get("refreshTime")
    if not text:
        return DEFAULT_REFRESH
    try:
        return parse_duration(text, what="refreshTime")
    except InvalidInput:  # the CRD's pattern admits only Go durations
        return DEFAULT_REFRESH
