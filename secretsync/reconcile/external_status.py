"""ExternalSecret and store status: what it holds (pure; written through ``reconcile.status``).

Status holds what an operator needs and nothing that moves on every refresh: the ``Ready``
condition (reason + one-line message, no values), ``observedGeneration``, the keyed hash
(HMAC under a controller-held key, ``reconcile.external.data_hash``) of the synced data,
when the data last changed, and the target's name. The time of the last check
is deliberately *not* here (it is a Prometheus gauge): writing it would be GitOps churn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from secretsync.reconcile import status as st

READY = "Ready"


def build_status(
    prev: Mapping[str, Any] | None,
    *,
    generation: int | None,
    ready: bool,
    reason: str,
    message: str,
    now: str,
    data_hash: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """The new status. ``data_hash=None`` keeps the previous hash (a failure does not forget
    what is in the Secret); a new hash moves ``lastChangeTime``."""
    prev = prev or {}
    out: dict[str, Any] = {}
    cond = st.condition(READY, ready, reason, message, now=now,
                        previous=st.find_condition(prev, READY))
    out["conditions"] = [cond]
    if generation is not None:
        out["observedGeneration"] = generation
    elif "observedGeneration" in prev:
        out["observedGeneration"] = prev["observedGeneration"]
    old_hash = prev.get("syncedDataHash")
    new_hash = data_hash if data_hash is not None else old_hash
    if new_hash:
        out["syncedDataHash"] = new_hash
        out["lastChangeTime"] = now if new_hash != old_hash else prev.get("lastChangeTime") or now
    if target or prev.get("binding"):
        out["binding"] = {"name": target or (prev.get("binding") or {}).get("name")}
    return out


def ready_changed(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """For Events: the Ready condition's status or reason changed."""
    return st.condition_changed(prev, new, READY)
