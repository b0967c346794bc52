"""Pure helpers shared by the SealedSecret and ExternalSecret reconcilers.

- ``build_secret``: the desired v1 Secret (data base64-encoded, our managed-by label, an
  ownerReference with ``controller: true`` so deleting the owner garbage-collects it).
- ``ownership``: may we write this existing Secret? (ours, handed over with
  ``secretsync.io/managed: "true"``, or someone else's -- which we leave alone).
- ``plan_secret``: existing vs desired -> create, patch (a minimal merge patch), recreate (type
  or immutability forbids an update) or nothing. "Nothing" is the common case and costs no API
  call: this is what keeps GitOps clusters free of churn.
- ``synced_condition`` / ``status_patch``: the ``Synced`` condition and whether ``.status``
  needs a write at all (``lastTransitionTime`` only moves when the status flips).

Plain dicts in and out; no Kubernetes client.
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from secretsync import api, clock

Obj = dict[str, Any]

# Metadata other tools legitimately add to Secrets; never "restored" away.
IGNORED_META_PREFIXES = ("kubectl.kubernetes.io/", "kopf.zalando.org/", "kopf.secretsync.io/")
IGNORED_META_KEYS = (api.ANN_MANAGED,)


def owner_reference(owner: Mapping[str, Any], *, block_owner_deletion: bool = False) -> Obj:
    """The controller ownerReference of a Secret made for ``owner`` (the one shape every
    engine uses). ``block_owner_deletion``: ESO sets it on its ExternalSecrets' Secrets
    (foreground deletion waits for them), Bitnami does not on its SealedSecrets' -- each kind
    keeps its peer's choice, so a switch-over rewrites no Secret."""
    meta = owner.get("metadata") or {}
    ref: Obj = {
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
    }
    if block_owner_deletion:
        ref["blockOwnerDeletion"] = True
    return ref


def encode_data(values: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in values.items()}


def build_secret(
    *,
    name: str,
    namespace: str,
    data: Mapping[str, bytes],
    owner: Mapping[str, Any] | None = None,
    type_: str = "Opaque",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    immutable: bool | None = None,
) -> Obj:
    """The desired Secret. Our ``managed-by`` label is always set (the Secret watch selects
    on it); user labels cannot remove it."""
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "labels": {**(labels or {}), api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    secret: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": type_ or "Opaque",
        "data": encode_data(data),
    }
    if immutable is not None:
        secret["immutable"] = immutable
    return secret


Ownership = Literal["owned", "handover", "foreign"]


def controller_ref(obj: Mapping[str, Any]) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _group(api_version: object) -> str:
    text = str(api_version or "")
    return text.split("/", 1)[0] if "/" in text else ""


def ownership(existing: Mapping[str, Any], owner: Mapping[str, Any]) -> Ownership:
    """``owned``: its controller reference is this owner (same uid), or an earlier incarnation
    of it (same group, kind and name -- the owner was deleted and re-applied before garbage
    collection ran). ``handover``: annotated ``secretsync.io/managed: "true"`` and controlled by
    nobody else. ``foreign``: anything else; we must not touch it."""
    meta = owner.get("metadata") or {}
    ref = controller_ref(existing)
    if ref is not None:
        if ref.get("uid") == meta.get("uid"):
            return "owned"
        same = (
            ref.get("kind") == owner.get("kind")
            and _group(ref.get("apiVersion")) == _group(owner.get("apiVersion"))
            and ref.get("name") == meta.get("name")
        )
        return "owned" if same else "foreign"
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(api.ANN_MANAGED, "")).lower() == "true":
        return "handover"
    return "foreign"


def _ignored(key: str) -> bool:
    return key in IGNORED_META_KEYS or key.startswith(IGNORED_META_PREFIXES)


def _map_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> Obj | None:
    """A merge-patch fragment turning ``current`` into ``desired`` (None: already equal)."""
    current = current or {}
    patch: Obj = {}
    for k, v in desired.items():
        if current.get(k) != v:
            patch[k] = v
    for k in current:
        if k not in desired and not _ignored(k):
            patch[k] = None
    return patch or None


def _data_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> Obj | None:
    current = current or {}
    patch: Obj = {k: v for k, v in desired.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in desired})
    return patch or None


@dataclass(frozen=True)
class SecretPlan:
    """What to do with the target Secret. ``body`` is the full desired Secret (create and
    recreate), ``patch`` a merge patch (patch)."""

    action: Literal["none", "create", "patch", "recreate"]
    body: Obj | None = None
    patch: Obj | None = None
    changed: tuple[str, ...] = ()  # which aspects differ (for logs/events; never values)


def plan_secret(existing: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> SecretPlan:
    """Existing vs desired. Labels/annotations/data are compared exactly (keys added by
    hand are removed, except kubectl's and kopf's own); the owner reference is (re)added."""
    if existing is None:
        return SecretPlan("create", body=dict(desired), changed=("missing",))
    want_type = desired.get("type") or "Opaque"
    if (existing.get("type") or "Opaque") != want_type:
        return SecretPlan("recreate", body=dict(desired), changed=("type",))
    dmeta = desired.get("metadata") or {}
    emeta = existing.get("metadata") or {}
    data_patch = _data_patch(existing.get("data"), desired.get("data") or {})
    if existing.get("immutable") and (data_patch or not desired.get("immutable")):
        return SecretPlan("recreate", body=dict(desired), changed=("immutable",))
    patch: Obj = {}
    changed: list[str] = []
    meta_patch: Obj = {}
    labels = _map_patch(emeta.get("labels"), dmeta.get("labels") or {})
    if labels:
        meta_patch["labels"] = labels
        changed.append("labels")
    annotations = _map_patch(emeta.get("annotations"), dmeta.get("annotations") or {})
    if annotations:
        meta_patch["annotations"] = annotations
        changed.append("annotations")
    want_refs = dmeta.get("ownerReferences")
    if want_refs is not None:
        want_uid = want_refs[0].get("uid") if want_refs else None
        have = emeta.get("ownerReferences") or []
        if not any(r.get("uid") == want_uid and r.get("controller") for r in have):
            others = [r for r in have if not r.get("controller")]
            meta_patch["ownerReferences"] = [*want_refs, *others]
            changed.append("owner")
    if meta_patch:
        patch["metadata"] = meta_patch
    if data_patch:
        patch["data"] = data_patch
        changed.append("data")
    if desired.get("immutable") and not existing.get("immutable"):
        patch["immutable"] = True
        changed.append("immutable")
    if not patch:
        return SecretPlan("none")
    return SecretPlan("patch", patch=patch, changed=tuple(changed))


# --- status ----------------------------------------------------------------------------------


def synced_condition(ok: bool, reason: str, message: str) -> Obj:
    return {"type": "Synced", "status": "True" if ok else "False",
            "reason": reason, "message": message[:1024]}


def status_patch(
    current: Mapping[str, Any] | None,
    *,
    generation: int | None,
    condition: Mapping[str, Any],
    now: _dt.datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Obj | None:
    """The new ``.status`` when anything but timestamps would change, else None (no write).

    Keeps ``lastTransitionTime`` while the condition's status stays the same."""
    current = current or {}
    conds = [c for c in current.get("conditions") or [] if isinstance(c, dict)]
    old = next((c for c in conds if c.get("type") == condition.get("type")), None)
    new = dict(condition)
    same_status = old is not None and old.get("status") == new.get("status")
    new["lastTransitionTime"] = (
        old.get("lastTransitionTime") if same_status and old and old.get(
            "lastTransitionTime") else clock.rfc3339(now)
    )
    if generation is not None:
        new["observedGeneration"] = generation
    others = [c for c in conds if c.get("type") != condition.get("type")]
    desired: Obj = {**dict(extra or {}), "conditions": [*others, new]}
    if generation is not None:
        desired["observedGeneration"] = generation
    unchanged = all(current.get(k) == v for k, v in desired.items() if k != "conditions")
    if unchanged and old is not None:
        comparable = {k: v for k, v in old.items() if k != "lastTransitionTime"}
        if comparable == {k: v for k, v in new.items() if k != "lastTransitionTime"}:
            return None
    return desired
