"""SecretStores and ClusterSecretStores: an in-memory index and one backend client per store.

A client is built and validated once per (store uid, generation[, namespace]) and reused by
every ExternalSecret using the store; a new generation builds a new client and closes the old.
A store whose validation fails (or whose backend is down) is marked not ready — status
condition, Event, gauge — and retried with exponential backoff: in between, ExternalSecrets
get the cached error without a single backend call ("not hammered").

A ClusterSecretStore whose credential references omit a namespace resolves them in the
ExternalSecret's namespace (as ESO does), so its clients are per namespace; with explicit
namespaces everywhere one client serves all namespaces.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secretsync import api, clock
from secretsync.backends import registry
from secretsync.backends.base import Backend, StoreContext
from secretsync.controller.external import metrics as m
from secretsync.controller.runtime import kube_call
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    KubeError,
    SecretSyncError,
    StoreInvalid,
)
from secretsync.kube import Kube
from secretsync.reconcile.external_schedule import backoff
from secretsync.reconcile.external_status import build_status, ready_changed
from secretsync.reconcile.status import status_patch

log = logging.getLogger("secretsync.stores")

StoreId = tuple[str, str, str]  # (kind, namespace or "", name)
ClientKey = tuple[str, int, str]  # (uid, generation, namespace for refs or "")

PLURALS = {api.KIND_STORE: api.PLURAL_STORE, api.KIND_CLUSTER_STORE: api.PLURAL_CLUSTER_STORE}


class StoreNotReady(BackendError):
    reason = "StoreNotReady"


@dataclass
class _Client:
    key: ClientKey
    store: StoreId
    provider: str = ""
    backend: Backend | None = None
    error: SecretSyncError | None = None
    failures: int = 0
    retry_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def refs_need_namespace(provider_spec: Any) -> bool:
    """True when some credential reference (a ``{name, key}`` Secret ref or a
    ``serviceAccountRef``) under the provider block has no explicit namespace."""
    if isinstance(provider_spec, Mapping):
        is_ref = "name" in provider_spec and (
            "key" in provider_spec or "audiences" in provider_spec
        )
        if is_ref and not provider_spec.get("namespace"):
            return True
        for k, v in provider_spec.items():
            if k == "serviceAccountRef" and isinstance(v, Mapping) and not v.get("namespace"):
                return True
            # a Secret ref whose key may default (Vault kubernetes.secretRef: key ``token``)
            if (k == "secretRef" and isinstance(v, Mapping) and v.get("name")
                    and not v.get("namespace")):
                return True
            if refs_need_namespace(v):
                return True
    elif isinstance(provider_spec, list):
        return any(refs_need_namespace(v) for v in provider_spec)
    return False


class Stores:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.objects: dict[StoreId, dict[str, Any]] = {}
        self.clients: dict[ClientKey, _Client] = {}
        self._status: dict[StoreId, dict[str, Any]] = {}
        self._closing: set[asyncio.Future[None]] = set()  # clients of replaced stores

    # --- the index (fed by kopf events) -------------------------------------------------------
    def upsert(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Record a store; returns True when its spec changed (generation or new)."""
        meta = body.get("metadata") or {}
        sid: StoreId = (kind, meta.get("namespace") or "", meta.get("name") or "")
        old = self.objects.get(sid)
        self.objects[sid] = dict(body)
        self._status[sid] = dict(body.get("status") or {})
        changed = (
            old is None
            or (old.get("metadata") or {}).get("generation") != meta.get("generation")
            or (old.get("metadata") or {}).get("uid") != meta.get("uid")
        )
        if changed:
            self._drop_stale(sid, str(meta.get("uid")), int(meta.get("generation") or 0))
        return changed

    def remove(self, kind: str, namespace: str, name: str) -> None:
        sid: StoreId = (kind, namespace, name)
        self.objects.pop(sid, None)
        self._drop_stale(sid, "", -1)

    def _drop_stale(self, sid: StoreId, uid: str, generation: int) -> None:
        for key, c in list(self.clients.items()):
            if c.store == sid and (key[0] != uid or key[1] != generation):
                del self.clients[key]
                if c.backend is not None:
                    task = asyncio.ensure_future(_close_quietly(c.backend))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        sid: StoreId = (kind, "" if kind == api.KIND_CLUSTER_STORE else namespace, name)
        body = self.objects.get(sid)
        if body is None:  # events for the store may not have arrived yet
            ns = None if kind == api.KIND_CLUSTER_STORE else namespace
            body = await kube_call(
                self.kube.get_custom, api.GROUP, api.VERSION, PLURALS[kind], ns, name
            )
            if body is not None:
                self.upsert(kind, body)
        return body

    # --- clients ----------------------------------------------------------------------------------
    async def client(
        self, kind: str, store: Mapping[str, Any], es_namespace: str
    ) -> tuple[ClientKey, str, Backend]:
        """A validated backend client for ``store`` as used from ``es_namespace``.

        Raises StoreNotReady (with the validation error's message) while the store is backing
        off, StoreInvalid for a bad spec, BackendNotInstalled for a missing extra."""
        meta = store.get("metadata") or {}
        sid: StoreId = (kind, meta.get("namespace") or "", meta.get("name") or "")
        spec = store.get("spec") or {}
        ref_ns = meta.get("namespace") or ""
        if kind == api.KIND_CLUSTER_STORE:
            ref_ns = es_namespace if refs_need_namespace(spec.get("provider")) else ""
        key: ClientKey = (str(meta.get("uid")), int(meta.get("generation") or 0), ref_ns)
        c = self.clients.get(key)
        if c is None:
            c = self.clients[key] = _Client(key=key, store=sid)
        if c.backend is not None and c.error is None:
            return key, c.provider, c.backend
        async with c.lock:
            if c.backend is not None and c.error is None:
                return key, c.provider, c.backend
            if c.error is not None and time.monotonic() < c.retry_at:
                raise StoreNotReady(f"{kind} {meta.get('name')!r} is not ready: {c.error.message}")
            await self._build(c, kind, store, ref_ns or es_namespace)
            if c.error is not None:
                raise StoreNotReady(f"{kind} {meta.get('name')!r} is not ready: {c.error.message}")
            assert c.backend is not None
            return key, c.provider, c.backend

    async def _build(self, c: _Client, kind: str, store: Mapping[str, Any], ref_ns: str) -> None:
        meta = store.get("metadata") or {}
        # A namespaced SecretStore may only use credentials of its own namespace; otherwise
        # anyone who can create a SecretStore could borrow another namespace's Vault token.
        own = str(meta.get("namespace") or "") if kind == api.KIND_STORE else ""
        what = f"{kind} {meta.get('name')!r}"

        def check(namespace: str, thing: str) -> None:
            if own and namespace != own:
                raise StoreInvalid(
                    f"{what} may only reference {thing} in its own namespace "
                    f"{own!r}, not {namespace!r}"
                )

        async def resolve(namespace: str, name: str, key: str) -> bytes:
            check(namespace, "Secrets")
            return await self._resolve_secret(namespace, name, key)

        async def token(
            namespace: str, sa: str, audiences: list[str], /,
            expiration_seconds: int | None = None,
        ) -> str:
            check(namespace, "ServiceAccounts")
            return await self._request_token(namespace, sa, audiences, expiration_seconds)

        async def service_account(namespace: str, sa: str) -> Mapping[str, str]:
            check(namespace, "ServiceAccounts")
            return await self._read_service_account(namespace, sa)

        ctx = StoreContext(
            store_kind=kind,
            store_name=str(meta.get("name")),
            namespace=ref_ns,
            provider={},
            resolve_secret=resolve,
            request_token=token,
            read_service_account=service_account,
        )
        try:
            if c.backend is None:
                c.provider, c.backend = await registry.build(ctx, store.get("spec") or {})
            await c.backend.validate()
        except SecretSyncError as exc:
            self._failed(c, exc)
        else:
            c.error, c.failures = None, 0
            log.info("%s %s/%s validated", kind, meta.get("namespace") or "-", meta.get("name"))
        await self._report(kind, store, c)

    def _failed(self, c: _Client, exc: SecretSyncError) -> None:
        c.failures += 1
        c.error = exc
        c.retry_at = time.monotonic() + backoff(c.failures, random.random())  # noqa: S311
        log.warning(
            "store %s/%s not ready (%s): %s", c.store[1] or "-", c.store[2], exc.reason, exc.message
        )

    async def report_unavailable(self, key: ClientKey, exc: BackendUnavailable) -> None:
        """A read through a validated client found the backend down: stop every other
        ExternalSecret of this store from trying until the backoff expires, and say so on
        the store's status at once (not only at the next validation, after the backoff)."""
        c = self.clients.get(key)
        if c is not None and c.error is None:
            self._failed(c, exc)
            store = self.objects.get(c.store)
            if store is not None:
                await self._report(c.store[0], store, c)

    async def _report(self, kind: str, store: Mapping[str, Any], c: _Client) -> None:
        meta = store.get("metadata") or {}
        sid = c.store
        ready = c.error is None
        if c.key[2] and kind == api.KIND_CLUSTER_STORE:
            # A client for one reading namespace (its refs resolve there): its problem is
            # reported on that namespace's ExternalSecrets, not on the shared store's status
            # (which would flip between namespaces).
            return
        m.STORE_READY.labels(kind, sid[1], sid[2]).set(1 if ready else 0)
        prev = self._status.get(sid) or {}
        reason = "Valid" if ready else (c.error.reason if c.error else "Error")
        message = "store validated" if ready else (c.error.message if c.error else "")
        new = build_status(
            prev,
            generation=int(meta.get("generation") or 0),
            ready=ready,
            reason=reason,
            message=message,
            now=clock.rfc3339(),
        )
        patch = status_patch(prev, new)
        if patch is None:
            return
        ns = meta.get("namespace") or None
        try:
            await kube_call(
                self.kube.patch_custom_status,
                api.GROUP,
                api.VERSION,
                PLURALS[kind],
                ns,
                str(meta.get("name")),
                patch,
            )
            m.API_WRITES.labels(kind, "patch-status").inc()
            self._status[sid] = {**prev, **new}
            if ready_changed(prev, new):
                if await kube_call(self.kube.post_event, store, reason=reason,
                                   message=message, warning=not ready):
                    m.API_WRITES.labels("Event", "create").inc()
        except KubeError as exc:
            log.warning("cannot update status of %s %s: %s", kind, meta.get("name"), exc.message)

    # --- what backends may ask of Kubernetes ---------------------------------------------------
    async def _resolve_secret(self, namespace: str, name: str, key: str) -> bytes:
        try:
            value = await kube_call(self.kube.read_secret_key, namespace, name, key)
        except KubeError as exc:
            raise BackendAuthError(
                f"cannot read credentials Secret {namespace}/{name}: {exc.reason}"
            ) from exc
        if value is None:
            raise StoreInvalid(
                f"credentials Secret {namespace}/{name} or its key {key!r} does not exist"
            )
        return value

    async def _request_token(
        self, namespace: str, sa: str, audiences: list[str], expiration: int | None = None
    ) -> str:
        try:
            return await kube_call(
                self.kube.request_token,
                namespace,
                sa,
                audiences=audiences or None,
                expiration_seconds=expiration or 600,
            )
        except KubeError as exc:
            raise BackendAuthError(
                f"cannot get a token for ServiceAccount {namespace}/{sa}: {exc.reason}"
            ) from exc

    async def _read_service_account(self, namespace: str, sa: str) -> Mapping[str, str]:
        try:
            obj = await kube_call(self.kube.get_service_account, namespace, sa)
        except KubeError as exc:
            raise BackendAuthError(
                f"cannot read ServiceAccount {namespace}/{sa}: {exc.reason}"
            ) from exc
        if obj is None:
            raise StoreInvalid(f"ServiceAccount {namespace}/{sa} does not exist")
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return {str(k): str(v) for k, v in annotations.items()}

    async def close_all(self) -> None:
        clients, self.clients = list(self.clients.values()), {}
        for c in clients:
            if c.backend is not None:
                await _close_quietly(c.backend)


async def _close_quietly(backend: Backend) -> None:
    try:
        await backend.close()
    except Exception as exc:  # closing must never take the controller down
        log.warning("closing a backend client failed: %s", type(exc).__name__)
