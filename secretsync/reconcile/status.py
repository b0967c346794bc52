"""Conditions and status patches, one way for every kind (pure).

SealedSecrets, ExternalSecrets and stores all report through ``.status``: conditions with a
reason word and a one-line, value-free message, and ``observedGeneration``. Two rules keep
that from churning a GitOps cluster, and they live here once:

- ``lastTransitionTime`` moves only when a condition's ``status`` flips (``condition``);
- a status is written only when something other than that timestamp would change
  (``status_patch`` returns ``None``), and then as a merge patch of the keys that changed.

Plain dicts in and out; no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Obj = dict[str, Any]

MAX_MESSAGE = 1024
"""A condition message is one line of at most this many characters."""


def one_line(message: str) -> str:
    """The first line of ``message``, capped at ``MAX_MESSAGE`` characters."""
    return message.splitlines()[0][:MAX_MESSAGE] if message else ""


def find_condition(status: Mapping[str, Any] | None, type_: str) -> Obj | None:
    """The condition of ``type_`` in ``status`` (a copy), or None."""
    for c in (status or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return dict(c)
    return None


def condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    *,
    now: str,
    previous: Mapping[str, Any] | None = None,
    generation: int | None = None,
) -> Obj:
    """A condition of ``type_``; ``lastTransitionTime`` is kept from ``previous`` (the same
    type's condition in the current status) while ``status`` stays the same."""
    status = "True" if ok else "False"
    since = (previous or {}).get("lastTransitionTime") if (
        (previous or {}).get("status") == status) else None
    cond: Obj = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": one_line(message),
        "lastTransitionTime": since or now,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def with_condition(status: Mapping[str, Any] | None, cond: Mapping[str, Any]) -> list[Obj]:
    """``status``'s conditions with ``cond`` replacing the one of its type (others kept, in
    order; ``cond`` last)."""
    kept = [dict(c) for c in (status or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") != cond.get("type")]
    return [*kept, dict(cond)]


def _comparable(conditions: Sequence[Any] | None) -> list[Obj]:
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in conditions or [] if isinstance(c, dict)]


def status_patch(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Obj | None:
    """A merge patch turning ``prev`` into ``new`` (for the keys ``new`` has), or ``None``
    when they differ in nothing but condition timestamps: the no-churn rule. Keys only
    ``prev`` has (another tool's, or a peer controller's before a switch-over) are left."""
    prev = prev or {}
    patch: Obj = {k: v for k, v in new.items() if k != "conditions" and prev.get(k) != v}
    if "conditions" in new and _comparable(prev.get("conditions")) != _comparable(
            new["conditions"]):
        patch["conditions"] = new["conditions"]
    return patch or None


def condition_changed(prev: Mapping[str, Any] | None, new: Mapping[str, Any],
                      type_: str) -> bool:
    """For Events: post one only when the condition's status or reason changes."""
    a, b = find_condition(prev, type_), find_condition(new, type_)
    if a is None or b is None:
        return a is not b
    return (a.get("status"), a.get("reason")) != (b.get("status"), b.get("reason"))
