"""Leader election with a coordination.k8s.io/v1 Lease, so two replicas run safely.

Only the holder of the Lease runs the operator (SealedSecret and ExternalSecret handlers,
key generation); the other replica waits, polling every ``retry_period`` seconds, and takes
over once the holder stops renewing for ``lease_duration`` seconds (15 s by default, so a
dead leader is replaced in well under 30 s). Every write is an optimistic-concurrency update
(``resourceVersion``), so two candidates can never both win. A leader that fails to renew
before its own lease would expire steps down (the caller exits non-zero and the Deployment
restarts the pod); a leader that stops cleanly releases the Lease for an immediate takeover.

The decision "may I take this Lease now?" is the pure function ``can_acquire``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from secretsync import clock
from secretsync.errors import KubeConflict, KubeError
from secretsync.kube import Kube

log = logging.getLogger("secretsync.leader")


def default_identity() -> str:
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def can_acquire(lease: Mapping[str, Any] | None, identity: str, now: _dt.datetime) -> bool:
    """Free, ours, released (no holder) or expired (not renewed within its duration)."""
    if lease is None:
        return True
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    renewed = clock.parse(spec.get("renewTime")) or clock.parse(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 15)
    if renewed is None:
        return True
    return now >= renewed + _dt.timedelta(seconds=duration)


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        *,
        identity: str | None = None,
        lease_duration: int = 15,
        renew_period: float = 5.0,
        retry_period: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_period = renew_period
        self.retry_period = retry_period
        self._transitions = 0

    def _body(self, current: Mapping[str, Any] | None, now: _dt.datetime) -> dict[str, Any]:
        spec = dict((current or {}).get("spec") or {})
        ours = spec.get("holderIdentity") == self.identity
        if not ours:
            spec["acquireTime"] = clock.rfc3339_micro(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if current is not None else 0
            )
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = self.lease_duration
        spec["renewTime"] = clock.rfc3339_micro(now)
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if current is not None:
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt (sync; run it in a thread). True when we hold the Lease afterwards."""
        now = _dt.datetime.now(_dt.UTC)
        current = self.kube.get_lease(self.namespace, self.name)
        if not can_acquire(current, self.identity, now):
            return False
        try:
            if current is None:
                self.kube.create_lease(self.namespace, self._body(None, now))
            else:
                self.kube.replace_lease(self.namespace, self.name, self._body(current, now))
        except KubeConflict:
            return False
        return True

    def release(self) -> None:
        """Give the Lease up (clean shutdown): the standby takes over on its next poll."""
        try:
            current = self.kube.get_lease(self.namespace, self.name)
            if current is None or (current.get("spec") or {}).get("holderIdentity") != (
                self.identity
            ):
                return
            body = self._body(current, _dt.datetime.now(_dt.UTC))
            body["spec"]["holderIdentity"] = None
            body["spec"]["leaseDurationSeconds"] = 1
            self.kube.replace_lease(self.namespace, self.name, body)
            log.info("released leadership lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)

    async def acquire(self) -> None:
        """Wait until we are the leader."""
        waiting_logged = False
        while True:
            try:
                if await asyncio.to_thread(self.try_acquire_or_renew):
                    log.info("acquired leadership lease %s/%s as %s",
                             self.namespace, self.name, self.identity)
                    return
                if not waiting_logged:
                    log.info("another replica holds lease %s/%s; standing by",
                             self.namespace, self.name)
                    waiting_logged = True
            except KubeError as exc:
                log.warning("leader election: %s", exc)
            await asyncio.sleep(self.retry_period)

    async def keep(self) -> None:
        """Renew until renewal fails for longer than the lease lasts; then return (lost)."""
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while True:
            await asyncio.sleep(self.renew_period)
            try:
                if await asyncio.to_thread(self.try_acquire_or_renew):
                    last_ok = loop.time()
                    continue
                log.error("leadership lease %s/%s was taken by another replica",
                          self.namespace, self.name)
                return
            except KubeError as exc:
                log.warning("could not renew lease %s/%s: %s", self.namespace, self.name, exc)
            # Step down before the lease expires for others, so two leaders never overlap.
            if loop.time() - last_ok > self.lease_duration - self.renew_period:
                log.error("could not renew leadership lease in time; stepping down")
                return
