"""SealedSecret -> desired Secret, as pure functions (no Kubernetes client, no kopf).

The controller does the I/O around three steps:

1. ``prepare``: read name, namespace, scope label, fingerprint hint, the sealed items and the
   template out of the object; malformed objects fail here (``InvalidSpec``).
2. decrypt each item with ``KeyRegistry.decrypt`` (on the thread pool; one RSA operation per
   item when the fingerprint hint names a key we hold);
3. ``desired_secret``: render ``spec.template.data`` over the decrypted values (sandboxed
   Jinja2, undefined names are errors) and build the Secret with an ownerReference.

``explain_failure`` turns a decryption failure into a precise reason: ``ScopeMismatch`` when
the item opens under another scope's label (the annotations disagree with how it was sealed),
otherwise ``DecryptFailed`` saying whether the key is ours. Messages name items and keys by
name and fingerprint only -- never a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from secretsync import api
from secretsync.crypto.format import scope_label
from secretsync.errors import (
    CiphertextTooShort,
    CryptoError,
    DecryptionFailed,
    InvalidInput,
    InvalidTemplate,
    SecretSyncError,
)
from secretsync.keys import KeyRegistry
from secretsync.reconcile import status
from secretsync.reconcile.secrets import build_secret
from secretsync.reconcile.template import render_data
from secretsync.sealing import encrypted_items, fingerprint_hint, scope_of

REASON_UNSEALED = "Unsealed"
REASON_DECRYPT_FAILED = "DecryptFailed"
REASON_SCOPE_MISMATCH = "ScopeMismatch"
REASON_UNMANAGED = "UnmanagedSecretExists"
REASON_INVALID_TEMPLATE = "InvalidTemplate"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_NO_KEYS = "NoKeys"


class SealFailure(SecretSyncError):
    """Why a SealedSecret could not become a Secret (``reason`` goes into the condition)."""


@dataclass(frozen=True)
class Prepared:
    name: str
    namespace: str
    scope: str
    label: bytes
    hint: str | None
    items: dict[str, bytes] = field(repr=False)
    template: dict[str, Any] = field(repr=False)


def _map(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SealFailure(f"{where} must be a mapping", reason=REASON_INVALID_SPEC)
    return value


def _str_map(value: object, where: str) -> dict[str, str]:
    m = _map(value, where)
    for k, v in m.items():
        if not isinstance(v, str):
            raise SealFailure(f"{where}.{k} must be a string", reason=REASON_INVALID_SPEC)
    return dict(m)


def prepare(sealed: Mapping[str, Any]) -> Prepared:
    """Everything needed to decrypt, validated; raises ``SealFailure`` (InvalidSpec /
    DecryptFailed for items that are not sealed items at all)."""
    meta = _map(sealed.get("metadata"), "metadata")
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str) or not name or not namespace:
        raise SealFailure("metadata.name and metadata.namespace are required",
                          reason=REASON_INVALID_SPEC)
    annotations = _map(meta.get("annotations"), "metadata.annotations")
    spec = _map(sealed.get("spec"), "spec")
    template = _map(spec.get("template"), "spec.template")
    try:
        scope = scope_of(annotations)
        label = scope_label(scope, namespace, name)
        items = encrypted_items(sealed)
    except CiphertextTooShort as exc:
        raise SealFailure(exc.message, reason=REASON_DECRYPT_FAILED) from None
    except InvalidInput as exc:
        raise SealFailure(exc.message, reason=REASON_INVALID_SPEC) from None
    if not items and not template.get("data"):
        raise SealFailure("spec.encryptedData is empty", reason=REASON_INVALID_SPEC)
    tmeta = _map(template.get("metadata"), "spec.template.metadata")
    _str_map(tmeta.get("labels"), "spec.template.metadata.labels")
    _str_map(tmeta.get("annotations"), "spec.template.metadata.annotations")
    _str_map(template.get("data"), "spec.template.data")
    if template.get("type") is not None and not isinstance(template.get("type"), str):
        raise SealFailure("spec.template.type must be a string", reason=REASON_INVALID_SPEC)
    if template.get("immutable") is not None and not isinstance(template.get("immutable"), bool):
        raise SealFailure("spec.template.immutable must be true or false",
                          reason=REASON_INVALID_SPEC)
    return Prepared(name, namespace, scope, label, fingerprint_hint(sealed), items, template)


def cache_key(sealed: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, besides the spec (its changes bump ``generation``), decides what a SealedSecret
    decrypts to: the scope (its label) and the key hint, both in metadata. Cheap -- no item is
    decoded -- so a controller can recognise an object it has already unsealed (e.g. the event
    of its own status write) without re-reading it; raises ``SealFailure`` when malformed."""
    meta = _map(sealed.get("metadata"), "metadata")
    try:
        scope = scope_of(_map(meta.get("annotations"), "metadata.annotations"))
    except InvalidInput as exc:
        raise SealFailure(exc.message, reason=REASON_INVALID_SPEC) from None
    return (meta.get("generation"), scope, fingerprint_hint(sealed))


def decrypt_one(registry: KeyRegistry, prepared: Prepared, item: str) -> bytes | CryptoError:
    """One item with the hinted key first (the value, or the error -- never raised)."""
    try:
        return registry.decrypt(prepared.items[item], prepared.label, prepared.hint)
    except CryptoError as exc:
        return exc


def explain_failure(
    registry: KeyRegistry, prepared: Prepared, item: str, error: CryptoError
) -> SealFailure:
    """A precise, value-free reason for one item that would not decrypt.

    Costs a few extra RSA operations, only on failure: the item is tried under the other
    scopes' labels to tell a scope mismatch from a wrong key or tampering."""
    if isinstance(error, CiphertextTooShort):
        return SealFailure(f"item {item!r} is not a sealed item ({error.message})",
                           reason=REASON_DECRYPT_FAILED)
    if len(registry) == 0:
        return SealFailure("no sealing key is loaded", reason=REASON_NO_KEYS)
    raw = prepared.items[item]
    for other in api.SCOPES:
        if other == prepared.scope:
            continue
        try:
            label = scope_label(other, prepared.namespace, prepared.name)
            registry.decrypt(raw, label, prepared.hint)
        except (CryptoError, InvalidInput):
            continue
        return SealFailure(
            f"item {item!r} was sealed {other} but the object says {prepared.scope}; "
            f"fix the scope annotations or reseal",
            reason=REASON_SCOPE_MISMATCH,
        )
    if prepared.hint and prepared.hint in registry:
        return SealFailure(
            f"item {item!r} does not open with key {prepared.hint[:16]} (ours): it was sealed "
            f"for another name/namespace, or the data was tampered with",
            reason=REASON_DECRYPT_FAILED,
        )
    if prepared.hint:
        return SealFailure(
            f"item {item!r} was sealed with key {prepared.hint[:16]}, which this controller "
            f"does not hold, and none of its {len(registry)} key(s) opens it",
            reason=REASON_DECRYPT_FAILED,
        )
    return SealFailure(
        f"item {item!r}: none of the {len(registry)} key(s) opens it (another cluster's key, "
        f"another name/namespace, or tampered data)",
        reason=REASON_DECRYPT_FAILED,
    )


def desired_secret(
    sealed: Mapping[str, Any], prepared: Prepared, values: Mapping[str, bytes]
) -> dict[str, Any]:
    """The Secret for these decrypted values: same name/namespace, template metadata, type,
    immutable, ``template.data`` rendered (it overrides items of the same key)."""
    template = prepared.template
    tmeta = template.get("metadata") or {}
    data = dict(values)
    tdata = template.get("data") or {}
    if tdata:
        try:
            data.update(render_data(tdata, values))
        except InvalidTemplate as exc:
            raise SealFailure(exc.message, reason=REASON_INVALID_TEMPLATE) from None
    return build_secret(
        name=prepared.name,
        namespace=prepared.namespace,
        data=data,
        owner=sealed,
        type_=template.get("type") or "Opaque",
        labels=tmeta.get("labels") or {},
        annotations=tmeta.get("annotations") or {},
        immutable=template.get("immutable"),
    )


def unseal(
    sealed: Mapping[str, Any], registry: KeyRegistry, item_order: Sequence[str] | None = None
) -> dict[str, Any]:
    """All three steps sequentially (tests, CLI, the /v1/verify endpoint, and the controller:
    one thread-pool job per object, so its items cost one hand-off instead of one each)."""
    prepared = prepare(sealed)
    values: dict[str, bytes] = {}
    for item in item_order or list(prepared.items):
        result = decrypt_one(registry, prepared, item)
        if isinstance(result, CryptoError):
            raise explain_failure(registry, prepared, item, result)
        values[item] = result
    return desired_secret(sealed, prepared, values)


SYNCED = "Synced"
"""The SealedSecret condition type (Bitnami's, so its readers keep working)."""


def status_update(obj: Mapping[str, Any], ok: bool, reason: str, message: str, *,
                  now: str) -> dict[str, Any] | None:
    """The status patch saying ``reason``/``message`` for ``obj``, or None when its status
    says so already (see ``reconcile.status``)."""
    prev = obj.get("status")
    generation = (obj.get("metadata") or {}).get("generation")
    cond = status.condition(SYNCED, ok, reason, message, now=now,
                            previous=status.find_condition(prev, SYNCED), generation=generation)
    new: dict[str, Any] = {"conditions": status.with_condition(prev, cond)}
    if generation is not None:
        new["observedGeneration"] = generation
    return status.status_patch(prev, new)


__all__ = [
    "REASON_DECRYPT_FAILED",
    "REASON_INVALID_SPEC",
    "REASON_INVALID_TEMPLATE",
    "REASON_SCOPE_MISMATCH",
    "REASON_UNMANAGED",
    "SYNCED",
    "DecryptionFailed",
    "Prepared",
    "SealFailure",
    "cache_key",
    "decrypt_one",
    "desired_secret",
    "explain_failure",
    "prepare",
    "status_update",
    "unseal",
]
