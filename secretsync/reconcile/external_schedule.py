"""When to refresh an ExternalSecret, how long to back off, who may use a store (pure).

Refresh times are aligned to a *phase* derived from the store and the keys an ExternalSecret
reads: objects reading the same keys from the same store refresh at the same moment (so the
single-flight cache turns N reads into one), while objects reading different keys are spread
over the interval — which is also the jitter that keeps a restarted controller from
refreshing everything at once. Phases come from wall-clock time, so they survive restarts.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from secretsync.reconcile.external_spec import ExternalSpec

BACKOFF_BASE = 5.0
BACKOFF_MAX = 300.0


def phase(store_key: str, fetch_keys: Iterable[str], interval: float) -> float:
    """Offset in [0, interval) shared by every object reading the same keys from one store."""
    if interval <= 0:
        return 0.0
    h = hashlib.sha256(store_key.encode())
    for k in sorted(fetch_keys):
        h.update(b"\0" + k.encode())
    frac = int.from_bytes(h.digest()[:8], "big") / 2**64
    return frac * interval


def next_slot(now: float, interval: float, offset: float, *, min_gap: float = 0.0) -> float:
    """The first time ``t > now + min_gap`` with ``t = offset (mod interval)`` (wall clock).

    ``min_gap`` skips a slot that comes too soon after a sync that just happened (its values
    are fresh), without leaving the object's phase grid."""
    k = math.floor((now + min_gap - offset) / interval) + 1
    return float(k * interval + offset)


def backoff(
    failures: int, rand: float, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX
) -> float:
    """Exponential backoff with jitter: ``base * 2**(n-1)`` capped, times [0.5, 1.0)."""
    if failures <= 0:
        return 0.0
    raw = min(cap, base * float(2 ** min(failures - 1, 30)))
    return raw * (0.5 + 0.5 * rand)


def refresh_reason(
    spec: ExternalSpec,
    es: Mapping[str, Any],
    *,
    secret_exists: bool | None,
    last_force: str | None,
    due: bool,
) -> str | None:
    """Why this object must be fetched now, or ``None``.

    ``due``: its periodic slot has come; ``last_force``: the force-sync annotation value we
    last acted on; ``secret_exists``: whether the target Secret exists (None = unknown).
    An object that is not Ready is always retried (the caller applies the backoff)."""
    meta = es.get("metadata") or {}
    status = es.get("status") or {}
    force = (meta.get("annotations") or {}).get("secretsync.io/force-sync")
    if force and force != last_force:
        return "force-sync"
    if status.get("observedGeneration") != meta.get("generation") or not status.get(
        "syncedDataHash"
    ):
        return "spec changed" if status.get("observedGeneration") else "new"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        return "retry"
    if secret_exists is False and spec.creation_policy in ("Owner", "Orphan"):
        return "target missing"
    if spec.refresh_policy == "CreatedOnce" or spec.refresh_policy == "OnChange":
        return None
    if spec.refresh_interval <= 0:
        return None
    return "periodic" if due else None


def namespace_allowed(
    conditions: Iterable[Mapping[str, Any]] | None, namespace: str, labels: Mapping[str, str] | None
) -> bool:
    """ClusterSecretStore ``spec.conditions``: allowed when there are none, or when any
    condition matches (``namespaces`` names, ``namespaceRegexes``, ``namespaceSelector``)."""
    conds = list(conditions or [])
    if not conds:
        return True
    for c in conds:
        if namespace in (c.get("namespaces") or []):
            return True
        if any(_search(rx, namespace) for rx in c.get("namespaceRegexes") or []):
            return True
        sel = c.get("namespaceSelector")
        if sel and labels is not None and selector_matches(sel, labels):
            return True
    return False


def _search(pattern: object, namespace: str) -> bool:
    """ESO matches ``namespaceRegexes`` unanchored (Go's ``regexp.MatchString``): ``^prod-``
    allows ``prod-eu``; anchor both ends for a whole-name match. A pattern that does not
    compile allows nothing (fail closed)."""
    try:
        return re.search(str(pattern), namespace) is not None
    except re.error:
        return False


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels + matchExpressions)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        has = key in labels
        if op == "In" and not (has and labels[key] in values):
            return False
        if op == "NotIn" and has and labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def needs_namespace_labels(conditions: Iterable[Mapping[str, Any]] | None) -> bool:
    return any(c.get("namespaceSelector") for c in conditions or [])
