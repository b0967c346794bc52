"""ExternalSecret -> desired Secret, its write plan and drift (pure functions).

The data comes from ``reconcile.external_data`` (fetch plan, assembly, template); here it
becomes the desired Secret, the decision whether the existing Secret must be written (and
how: ``reconcile.secrets.plan_secret`` under ESO's rules), and the drift check. Nothing here
talks to the API or a backend, so "no churn" is a property of ``plan_secret`` and
``reconcile.status.status_patch`` returning ``None`` for unchanged input, and it is unit-tested.

Conventions on managed Secrets: label ``app.kubernetes.io/managed-by=secretsync``,
annotation ``secretsync.io/external-secret: <ExternalSecret name>`` (the owner),
``secretsync.io/data-hash`` (HMAC of the managed keys and type under a controller-held
key, see ``data_hash``) and, for
``creationPolicy: Merge``, ``secretsync.io/managed-keys`` (comma-separated key names).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from secretsync import api
from secretsync.reconcile import secrets
from secretsync.reconcile.external_spec import ExternalSpec
from secretsync.reconcile.secrets import SecretPlan, WriteRules

ANN_OWNER = f"{api.GROUP}/external-secret"
ANN_MANAGED_KEYS = f"{api.GROUP}/managed-keys"
ANN_RESTARTED_AT = f"{api.GROUP}/restartedAt"

# --- the desired Secret --------------------------------------------------------------------


def data_hash(data: Mapping[str, bytes], type_: str, salt: str, key: bytes) -> str:
    """HMAC-SHA256, under the controller's ``key``, of the managed keys and type, salted with
    the ExternalSecret's uid (so equal data in two ExternalSecrets hashes differently).

    Stored on the Secret and in status to detect change and drift without keeping values.
    Keyed because whoever may read the ExternalSecret (not the Secret) knows the uid, the key
    names and the type: a plain hash would let them test guesses of a low-entropy value
    offline. ``key`` is held by the controller only (see ``controller.external.hashkey``);
    it is a parameter so this stays pure."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    h.update(salt.encode() + b"\0" + type_.encode() + b"\0")
    for k in sorted(data):
        h.update(k.encode() + b"\0" + hashlib.sha256(data[k]).digest())
    return h.hexdigest()[:40]


def secret_type(spec: ExternalSpec) -> str:
    return (spec.template.type if spec.template and spec.template.type else None) or "Opaque"


def desired_secret(
    es: Mapping[str, Any], spec: ExternalSpec, data: Mapping[str, bytes], *, hash_key: bytes
) -> dict[str, Any]:
    """The Secret we want (for creation; for existing Secrets see ``plan_secret``).
    ``hash_key`` keys its data-hash annotation (``data_hash``)."""
    meta = es.get("metadata") or {}
    type_ = secret_type(spec)
    labels = {
        **dict(spec.template.labels if spec.template else ()),
        api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE,
    }
    annotations = {
        **dict(spec.template.annotations if spec.template else ()),
        ANN_OWNER: str(meta.get("name")),
        api.ANN_DATA_HASH: data_hash(data, type_, str(meta.get("uid", "")), hash_key),
    }
    if spec.creation_policy == "Merge":
        annotations[ANN_MANAGED_KEYS] = ",".join(sorted(data))
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": spec.target_name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": annotations,
        },
        "type": type_,
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())},
    }
    if spec.immutable:
        body["immutable"] = True
    if spec.creation_policy == "Owner":
        body["metadata"]["ownerReferences"] = [owner_reference(es)]
    return body


def owner_reference(es: Mapping[str, Any]) -> dict[str, Any]:
    return secrets.owner_reference(
        {"apiVersion": api.API_VERSION, "kind": api.KIND_EXTERNAL, **es},
        block_owner_deletion=True)


def owned_by(secret: Mapping[str, Any], es_name: str) -> bool:
    meta = secret.get("metadata") or {}
    return (meta.get("annotations") or {}).get(ANN_OWNER) == es_name


def plan_secret(
    existing: Mapping[str, Any] | None, desired: Mapping[str, Any], spec: ExternalSpec, es_name: str
) -> SecretPlan:
    """Decide the write. Returns ``none`` when the existing Secret already matches (the no-churn
    rule): same managed data, same type, our labels and annotations present. ESO's rules:
    metadata is only added to; ``Merge`` touches only the keys it wrote."""
    if spec.creation_policy == "None":
        return SecretPlan("none")
    blocked = blocked_reason(existing, spec, es_name, owner_uid=_owner_uid(desired))
    if blocked:
        return SecretPlan("blocked", message=blocked)
    owned_keys = None
    if spec.creation_policy == "Merge" and existing is not None:
        ann = (existing.get("metadata") or {}).get("annotations") or {}
        owned_keys = frozenset(filter(None, str(ann.get(ANN_MANAGED_KEYS, "")).split(",")))
    return secrets.plan_secret(existing, desired,
                               WriteRules(prune_metadata=False, owned_keys=owned_keys))


def _owner_uid(desired: Mapping[str, Any]) -> str | None:
    refs = (desired.get("metadata") or {}).get("ownerReferences") or []
    return str(refs[0].get("uid")) if refs else None


def blocked_reason(
    existing: Mapping[str, Any] | None,
    spec: ExternalSpec,
    es_name: str,
    *,
    owner_uid: str | None = None,
) -> str | None:
    """Why we may not write the target at all (checked before fetching anything)."""
    policy = spec.creation_policy
    if policy == "None":
        return None
    if existing is None:
        if policy == "Merge":
            return (
                f"target Secret {spec.target_name!r} does not exist (creationPolicy Merge "
                "only updates an existing Secret)"
            )
        return None
    emeta = existing.get("metadata") or {}
    eann = emeta.get("annotations") or {}
    owner = eann.get(ANN_OWNER)
    if policy == "Merge":
        if owner not in (None, es_name):
            return (
                f"target Secret {spec.target_name!r} is merged into by ExternalSecret "
                f"{owner!r} already"
            )
        return None
    if owner == es_name or str(eann.get(api.ANN_MANAGED, "")).lower() == "true":
        return None
    refs = emeta.get("ownerReferences") or []
    if owner is None and owner_uid and any(r.get("uid") == owner_uid for r in refs):
        return None
    who = f"ExternalSecret {owner!r}" if owner else "someone else"
    return (
        f"target Secret {spec.target_name!r} exists and is managed by {who} (annotate it "
        f"{api.ANN_MANAGED}=true to hand it over)"
    )


def drift(
    secret: Mapping[str, Any] | None,
    spec: ExternalSpec,
    es: Mapping[str, Any],
    *,
    hash_key: bytes,
) -> str | None:
    """Why the live Secret no longer matches what we last wrote (``None`` = it matches).

    Uses only the Secret itself and the ExternalSecret's status hash (keyed with
    ``hash_key``, see ``data_hash``): no backend call."""
    if spec.creation_policy in ("None", "Orphan"):
        return None
    status = es.get("status") or {}
    want_hash = status.get("syncedDataHash")
    if not want_hash:
        return None  # never synced: nothing to compare with
    if secret is None:
        return None if spec.creation_policy == "Merge" else "target Secret deleted"
    meta = secret.get("metadata") or {}
    ann = meta.get("annotations") or {}
    if (meta.get("labels") or {}).get(api.LABEL_MANAGED_BY) != api.MANAGED_BY_VALUE:
        return "managed-by label removed"
    if ann.get(ANN_OWNER) != (es.get("metadata") or {}).get("name"):
        return "owner annotation changed"
    if ann.get(api.ANN_DATA_HASH) != want_hash:
        return "data-hash annotation changed"
    if spec.template:
        for k, v in spec.template.labels:
            if (meta.get("labels") or {}).get(k) != v:
                return f"label {k} changed"
        for k, v in spec.template.annotations:
            if ann.get(k) != v:
                return f"annotation {k} changed"
    raw = secret.get("data") or {}
    try:
        if spec.creation_policy == "Merge":
            keys = [k for k in str(ann.get(ANN_MANAGED_KEYS, "")).split(",") if k]
            data = {k: base64.b64decode(raw[k]) for k in keys if k in raw}
            type_ = secret_type(spec)
        else:
            data = {k: base64.b64decode(v) for k, v in raw.items()}
            type_ = str(secret.get("type") or "Opaque")
    except (binascii.Error, ValueError):
        return "data is not base64"
    uid = str((es.get("metadata") or {}).get("uid", ""))
    if data_hash(data, type_, uid, hash_key) != want_hash:
        return "data or type edited"
    return None
