"""ExternalSecret / store status: build it, and patch it only when something changed (pure).

Status holds what an operator needs and nothing that moves on every refresh: the ``Ready``
condition (reason + one-line message, no values), ``observedGeneration``, the keyed hash
(HMAC under a controller-held key, ``reconcile.external.data_hash``) of the synced data,
when the data last changed, and the target's name. The time of the last check
is deliberately *not* here (it is a Prometheus gauge): writing it would be GitOps churn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition(
    ready: bool, reason: str, message: str, now: str, previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A ``Ready`` condition; ``lastTransitionTime`` moves only when ``status`` flips."""
    status = "True" if ready else "False"
    prev_status = (previous or {}).get("status")
    since = (previous or {}).get("lastTransitionTime") if prev_status == status else None
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message.splitlines()[0][:500] if message else "",
        "lastTransitionTime": since or now,
    }


def ready_condition(status: Mapping[str, Any] | None) -> dict[str, Any] | None:
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


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
    cond = condition(ready, reason, message, now, ready_condition(prev))
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


_COMPARED = ("observedGeneration", "syncedDataHash", "lastChangeTime", "binding")


def status_patch(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning ``prev`` into ``new``, or ``None`` when they are equivalent."""
    prev = prev or {}
    patch: dict[str, Any] = {}
    for k in _COMPARED:
        if new.get(k) != prev.get(k):
            patch[k] = new.get(k)
    old_c, new_c = ready_condition(prev), ready_condition(new)
    strip = ("status", "reason", "message")
    if old_c is None or new_c is None or any(old_c.get(k) != new_c.get(k) for k in strip):
        patch["conditions"] = new.get("conditions")
    return patch or None


def condition_changed(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """For Events: post one only when the Ready condition's status or reason changes."""
    a, b = ready_condition(prev), ready_condition(new)
    if a is None or b is None:
        return a is not b
    return (a.get("status"), a.get("reason")) != (b.get("status"), b.get("reason"))
