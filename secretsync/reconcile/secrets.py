"""Pure helpers shared by the SealedSecret and ExternalSecret reconcilers.

- ``build_secret``: the desired v1 Secret (data base64-encoded, our managed-by label, an
  ownerReference with ``controller: true`` so deleting the owner garbage-collects it).
- ``ownership``: may we write this existing Secret? (ours, handed over with
  ``secretsync.io/managed: "true"``, or someone else's -- which we leave alone).
- ``plan_secret``: existing vs desired -> create, patch (a minimal merge patch), recreate (type
  or immutability forbids an update) or nothing. "Nothing" is the common case and costs no API
  call: this is what keeps GitOps clusters free of churn.

Conditions and status patches are in ``reconcile.status``.

Plain dicts in and out; no Kubernetes client.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from secretsync import api

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


@dataclass(frozen=True)
class WriteRules:
    """Which parts of an existing Secret a kind owns (each kind keeps its peer's rules, so a
    switch-over from Bitnami or ESO rewrites nothing)."""

    prune_metadata: bool = True
    """Remove labels and annotations the desired Secret does not have (kubectl's and kopf's
    own excepted). SealedSecret: its template is the Secret's whole metadata, as in Bitnami's.
    ExternalSecret: False -- ESO only adds and updates, other tools' metadata stays."""

    owned_keys: frozenset[str] | None = None
    """None: the whole Secret is ours (data compared exactly; a type change or lifted
    immutability recreates it). A set: ``creationPolicy: Merge`` into someone else's Secret --
    only these keys (the ones written last time) may be removed, its type and immutability
    are left alone, and it is never deleted."""


@dataclass(frozen=True)
class SecretPlan:
    """What to do with the target Secret. ``body`` is the full desired Secret (create and
    recreate), ``patch`` a merge patch (patch); ``blocked`` means it may not be written
    (``message`` says why, for the status); ``delete`` removes it."""

    action: Literal["none", "create", "patch", "recreate", "delete", "blocked"]
    body: Obj | None = None
    patch: Obj | None = None
    changed: tuple[str, ...] = ()  # which aspects differ (for logs/events; never values)
    message: str = ""


def _data_patch(current: Mapping[str, Any], desired: Mapping[str, Any],
                removable: Collection[str]) -> Obj | None:
    patch: Obj = {k: v for k, v in desired.items() if current.get(k) != v}
    patch.update({k: None for k in removable if k in current and k not in desired})
    return patch or None


def _meta_patch(emeta: Mapping[str, Any], dmeta: Mapping[str, Any], rules: WriteRules,
                changed: list[str]) -> Obj:
    meta_patch: Obj = {}
    for part in ("labels", "annotations"):
        want = dmeta.get(part) or {}
        if rules.prune_metadata:
            fragment = _map_patch(emeta.get(part), want)
        else:
            have = emeta.get(part) or {}
            fragment = {k: v for k, v in want.items() if have.get(k) != v} or None
        if fragment:
            meta_patch[part] = fragment
            changed.append(part)
    want_refs = dmeta.get("ownerReferences")
    if want_refs is not None:
        want_uid = want_refs[0].get("uid") if want_refs else None
        have_refs = emeta.get("ownerReferences") or []
        if not any(r.get("uid") == want_uid and r.get("controller") for r in have_refs):
            others = [r for r in have_refs if not r.get("controller")]
            meta_patch["ownerReferences"] = [*want_refs, *others]
            changed.append("owner")
    return meta_patch


def plan_secret(existing: Mapping[str, Any] | None, desired: Mapping[str, Any],
                rules: WriteRules = WriteRules()) -> SecretPlan:
    """Existing vs desired, under ``rules``: create, patch (a minimal merge patch), recreate
    (type or immutability forbids an update), blocked (an immutable Secret we only merge
    into) or nothing. The controller ownerReference is (re)added when the desired Secret has
    one."""
    if existing is None:
        return SecretPlan("create", body=dict(desired), changed=("missing",))
    whole = rules.owned_keys is None
    if whole and (existing.get("type") or "Opaque") != (desired.get("type") or "Opaque"):
        return SecretPlan("recreate", body=dict(desired), changed=("type",))
    current = existing.get("data") or {}
    data_patch = _data_patch(current, desired.get("data") or {},
                             current if whole else rules.owned_keys or ())
    if existing.get("immutable") and (data_patch or (whole and not desired.get("immutable"))):
        if not whole:
            name = (desired.get("metadata") or {}).get("name")
            return SecretPlan("blocked", changed=("immutable",),
                              message=f"target Secret {name!r} is immutable; "
                              "creationPolicy Merge cannot change its data")
        return SecretPlan("recreate", body=dict(desired), changed=("immutable",))
    changed: list[str] = []
    patch: Obj = {}
    meta_patch = _meta_patch(existing.get("metadata") or {}, desired.get("metadata") or {},
                             rules, changed)
    if meta_patch:
        patch["metadata"] = meta_patch
    if data_patch:
        patch["data"] = data_patch
        changed.append("data")
    if whole and desired.get("immutable") and not existing.get("immutable"):
        patch["immutable"] = True
        changed.append("immutable")
    if not patch:
        return SecretPlan("none")
    return SecretPlan("patch", patch=patch, changed=tuple(changed))
