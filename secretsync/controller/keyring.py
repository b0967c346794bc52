"""The controller's sealing keys: load, generate (persist first), renew, publish the cert.

Keys live as ``kubernetes.io/tls`` Secrets labelled ``secretsync.io/sealing-key=active`` in
the controller namespace (and, with ``--import-bitnami-keys``, Bitnami's
``sealedsecrets.bitnami.com/sealed-secrets-key=active`` ones). They are re-listed every few
seconds, so keys that are added, imported or relabelled are used without a restart; a key whose
Secret disappears or is labelled ``compromised`` stops being used. A generated key is written to
its Secret *before* it is used, so a crash can never leave SealedSecrets sealed to a key that
exists nowhere. The newest certificate is published in the ConfigMap ``<name>-cert`` (readable
by every authenticated user), which is what ``secretsync fetch-cert`` reads.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from secretsync import api
from secretsync.controller.settings import KeySettings
from secretsync.crypto import pem
from secretsync.errors import KubeConflict, KubeError, SecretSyncError
from secretsync.keys import (
    KeyRegistry,
    SealingKey,
    is_compromised,
    key_from_secret,
    secret_body_for_key,
    secret_name_for_key,
)
from secretsync.kube import Kube

log = logging.getLogger("secretsync.keys")


def renewal_due(
    newest_created: _dt.datetime | None,
    now: _dt.datetime,
    period_seconds: float,
    cutoff: _dt.datetime | None = None,
) -> bool:
    """Pure: is a new key needed? (none yet, older than the cutoff, or older than a period)."""
    if newest_created is None:
        return True
    if cutoff is not None and newest_created < cutoff <= now:
        return True
    if period_seconds <= 0:
        return False
    return now >= newest_created + _dt.timedelta(seconds=period_seconds)


def cert_pem(key: SealingKey) -> str:
    cert = key.certificate or pem.self_signed_certificate(key.private_key, now=key.created)
    return pem.certificate_to_pem(cert).decode("ascii")


class KeyManager:
    def __init__(self, kube: Kube, settings: KeySettings) -> None:
        self.kube = kube
        self.namespace = settings.namespace
        self.name = settings.name
        self.renew_period = settings.renew_period
        self.cutoff = settings.cutoff
        self.prefix = settings.prefix
        self.bits = settings.bits
        self.poll_interval = settings.poll_interval
        self.import_bitnami = settings.import_bitnami
        self.registry = KeyRegistry()
        self._versions: dict[str, str] = {}  # Secret name -> resourceVersion seen
        self._by_secret: dict[str, str] = {}  # Secret name -> fingerprint
        self._published: str | None = None
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self.generation = 0  # bumped whenever the key set changes
        self._ticks = 0
        # reload() runs in worker threads (the standby follower, start, the periodic tick); a
        # follower's reload cancelled on winning the Lease still runs to its end, and one run
        # racing another would see a Secret's version as handled before its key is in the
        # registry -- and a new key would be generated beside an existing one
        self._reload_lock = threading.Lock()

    # --- loading -------------------------------------------------------------------------

    def _selectors(self) -> list[str]:
        sels = [api.LABEL_SEALING_KEY]
        if self.import_bitnami:
            sels.append(f"{api.BITNAMI_LABEL_SEALING_KEY}=active")
        return sels

    def reload(self) -> bool:
        """Re-list the key Secrets (sync). Returns True when the usable key set changed."""
        with self._reload_lock:
            return self._reload()

    def _reload(self) -> bool:
        secrets: dict[str, dict[str, Any]] = {}
        for selector in self._selectors():
            for s in self.kube.list_secrets(self.namespace, selector):
                secrets[s["metadata"]["name"]] = s
        changed = False
        for name in list(self._by_secret):
            if name not in secrets:
                fp = self._by_secret.pop(name)
                self._versions.pop(name, None)
                if fp not in self._by_secret.values():
                    self.registry.remove(fp)
                log.info("key Secret %s/%s is gone; key %s no longer used",
                         self.namespace, name, fp[:16])
                changed = True
        for name, secret in secrets.items():
            rv = secret["metadata"].get("resourceVersion", "")
            if self._versions.get(name) == rv:
                continue
            self._versions[name] = rv
            old_fp = self._by_secret.pop(name, None)
            if old_fp and old_fp not in self._by_secret.values():
                self.registry.remove(old_fp)
                changed = True
            if is_compromised(secret):
                log.warning("key Secret %s/%s is labelled compromised; not used",
                            self.namespace, name)
                continue
            try:
                # validated when it entered the store (generated here, or imported)
                key = key_from_secret(secret, validate=False)
            except SecretSyncError as exc:
                log.warning("skipping key Secret %s/%s: %s", self.namespace, name, exc.message)
                continue
            if key.fingerprint not in self.registry:
                changed = True
                log.info("loaded sealing key %s from Secret %s/%s",
                         key.fingerprint[:16], self.namespace, name)
            self.registry.add(key)
            self._by_secret[name] = key.fingerprint
        if changed:
            self.generation += 1
        return changed

    # --- generation ----------------------------------------------------------------------

    def generate_and_persist(self) -> SealingKey:
        """Make a key, write its Secret, and only then add it to the registry (sync)."""
        key = SealingKey.generate(self.bits)
        body = secret_body_for_key(
            key, namespace=self.namespace, name=secret_name_for_key(key, self.prefix),
            labels={api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE},
        )
        try:
            created = self.kube.create_secret(self.namespace, body)
        except KubeConflict:
            created = self.kube.get_secret(self.namespace, body["metadata"]["name"]) or {}
        name = body["metadata"]["name"]
        self._versions[name] = (created.get("metadata") or {}).get("resourceVersion", "")
        self._by_secret[name] = key.fingerprint
        self.registry.add(key)
        self.generation += 1
        log.info("generated sealing key %s and stored it in Secret %s/%s",
                 key.fingerprint[:16], self.namespace, name)
        return key

    def ensure_current(self) -> bool:
        """Generate a key if none exists or renewal is due (sync). True when one was made."""
        keys = self.registry.keys()
        newest = keys[0].created if keys else None
        now = _dt.datetime.now(_dt.UTC)
        if renewal_due(newest, now, self.renew_period, self.cutoff):
            self.generate_and_persist()
            return True
        return False

    # --- certificate publication ---------------------------------------------------------

    @property
    def configmap_name(self) -> str:
        return f"{self.name}{api.CERT_CONFIGMAP_SUFFIX}"

    def publish_cert(self, *, verify: bool = False) -> None:
        """Write the newest certificate to the ConfigMap, only when it differs (sync).
        ``verify`` re-reads the ConfigMap even if we published this cert (someone may have
        deleted or edited it)."""
        newest = self.registry.newest()
        text = cert_pem(newest)
        if text == self._published and not verify:
            return
        cm = self.kube.get_configmap(self.namespace, self.configmap_name)
        data = {api.CERT_CONFIGMAP_KEY: text}
        annotations = {api.ANN_KEY_FINGERPRINT: newest.fingerprint}
        if cm is None:
            self.kube.create_configmap(self.namespace, {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": self.configmap_name,
                    "namespace": self.namespace,
                    "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE},
                    "annotations": annotations,
                },
                "data": data,
            })
        elif (cm.get("data") or {}).get(api.CERT_CONFIGMAP_KEY) != text or (
            (cm.get("metadata") or {}).get("annotations") or {}
        ).get(api.ANN_KEY_FINGERPRINT) != newest.fingerprint:
            self.kube.patch_configmap(self.namespace, self.configmap_name,
                                      {"metadata": {"annotations": annotations}, "data": data})
        else:
            self._published = text
            return  # already correct: no write, no log line
        self._published = text
        log.info("published certificate of key %s in ConfigMap %s/%s",
                 newest.fingerprint[:16], self.namespace, self.configmap_name)

    # --- lifecycle -----------------------------------------------------------------------

    def on_change(self, listener: Callable[[], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        await asyncio.to_thread(self.reload)
        await asyncio.to_thread(self.ensure_current)
        await asyncio.to_thread(self.publish_cert)

    async def tick(self) -> None:
        changed = await asyncio.to_thread(self.reload)
        changed = await asyncio.to_thread(self.ensure_current) or changed
        self._ticks += 1
        if changed or self._ticks % 6 == 0:  # and now and then, in case it was edited/deleted
            await asyncio.to_thread(lambda: self.publish_cert(verify=True))
        if changed:
            for listener in list(self._listeners):
                try:
                    await listener()
                except Exception:
                    log.exception("key-change listener failed")

    async def run_background(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.tick()
            except KubeError as exc:
                log.warning("key refresh failed: %s", exc.message)
            except SecretSyncError as exc:
                log.warning("key refresh failed: %s", exc.message)

    async def follow(self) -> None:
        """Standby replicas: keep the key set current (read-only) so /v1/cert.pem and
        /v1/verify answer from any replica; never generates."""
        while True:
            try:
                await asyncio.to_thread(self.reload)
            except SecretSyncError as exc:
                log.warning("key refresh failed: %s", exc.message)
            await asyncio.sleep(self.poll_interval)

    async def stop(self) -> None:
        self._listeners.clear()
