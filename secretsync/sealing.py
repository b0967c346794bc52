"""Secret document <-> SealedSecret document: pure functions on dicts.

The CLI (seal, unseal, reencrypt) and the controller share these so both agree on scope
rules, template handling and what gets carried over. Per-item crypto lives in
``secretsync.crypto``; key lookup in ``secretsync.keys``. Errors are ``InvalidInput`` /
``CryptoError`` whose text names the field and never contains a value.

Scope: ``secretsync.io/scope`` when present, else Bitnami's
``sealedsecrets.bitnami.com/cluster-wide: "true"`` (wins) or ``.../namespace-wide: "true"``,
else strict. We write both our annotation and Bitnami's, so Bitnami's controller would build
the same OAEP label.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from secretsync import api
from secretsync.api import names
from secretsync.crypto.format import scope_label, seal_item
from secretsync.errors import CiphertextTooShort, CryptoError, InvalidInput

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SEALED_API_VERSIONS = (api.API_VERSION, api.BITNAMI_API_VERSION)
_SCOPE_ANNOTATIONS = (api.ANN_SCOPE, api.BITNAMI_ANN_CLUSTER_WIDE, api.BITNAMI_ANN_NAMESPACE_WIDE)


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a mapping")
    return value


def _str_map(value: object, where: str) -> dict[str, str]:
    out = _mapping(value, where)
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidInput(f"{names.field(where, k)} must be a string")
    return out


def _true(value: object) -> bool:
    return (isinstance(value, str) and value.lower() == "true") or value is True


def scope_of(annotations: Mapping[str, Any]) -> str:
    """The scope recorded in a (Sealed)Secret's annotations; strict when none."""
    ours = annotations.get(api.ANN_SCOPE)
    if ours is not None:
        if ours not in api.SCOPES:
            raise InvalidInput(
                f"annotation {api.ANN_SCOPE} is not one of {', '.join(api.SCOPES)}"
            )
        return str(ours)
    if _true(annotations.get(api.BITNAMI_ANN_CLUSTER_WIDE)):
        return api.SCOPE_CLUSTER
    if _true(annotations.get(api.BITNAMI_ANN_NAMESPACE_WIDE)):
        return api.SCOPE_NAMESPACE
    return api.SCOPE_STRICT


def scope_annotations(scope: str) -> dict[str, str]:
    """What a SealedSecret of this scope carries (nothing for strict, the default)."""
    if scope == api.SCOPE_CLUSTER:
        return {api.ANN_SCOPE: scope, api.BITNAMI_ANN_CLUSTER_WIDE: "true"}
    if scope == api.SCOPE_NAMESPACE:
        return {api.ANN_SCOPE: scope, api.BITNAMI_ANN_NAMESPACE_WIDE: "true"}
    return {}


def encode_item(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_item(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CiphertextTooShort(f"{where} is not valid base64 (not a sealed item)") from None


# --- Secret -> SealedSecret ------------------------------------------------------------------


def secret_items(doc: Mapping[str, Any]) -> dict[str, bytes]:
    """``data`` (base64) and ``stringData`` (text; wins on a clash, as in Kubernetes). Keys
    must be keys the API server accepts in a Secret (checked here, before the commit)."""
    items: dict[str, bytes] = {}
    data = _mapping(doc.get("data"), "data")
    string_data = _mapping(doc.get("stringData"), "stringData")
    for where, mapping in (("data", data), ("stringData", string_data)):
        for k in mapping:
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise InvalidInput(f"{where} has a key that is not a string")
            if not names.is_secret_key(str(k)):
                raise InvalidInput(
                    f"{names.field(where, str(k))}: not a valid Secret key ({names.KEY_RULE})"
                )
    for k, v in data.items():
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise InvalidInput(f"data.{k} must be a base64 string")
        try:
            items[str(k)] = base64.b64decode("".join(v.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"data.{k} is not valid base64") from None
    for k, v in string_data.items():
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise InvalidInput(f"stringData.{k} must be a string (quote it in YAML)")
        items[str(k)] = v.encode("utf-8")
    return items


def _check_secret(doc: Mapping[str, Any]) -> None:
    # never quote what the fields hold: a misplaced value would land in the message
    if doc.get("kind") != "Secret":
        raise InvalidInput("not a Secret (kind must be Secret)")
    if doc.get("apiVersion", "v1") != "v1":
        raise InvalidInput("not a v1 Secret (apiVersion must be v1)")


def template_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``spec.template`` for a Secret: labels, annotations (minus kubectl's last-applied copy
    of the whole Secret and the scope annotations), type, immutable."""
    meta = _mapping(doc.get("metadata"), "metadata")
    labels = _str_map(meta.get("labels"), "metadata.labels")
    annotations = {
        k: v
        for k, v in _str_map(meta.get("annotations"), "metadata.annotations").items()
        if k != LAST_APPLIED and k not in _SCOPE_ANNOTATIONS
    }
    tmeta: dict[str, Any] = {}
    if labels:
        tmeta["labels"] = dict(labels)
    if annotations:
        tmeta["annotations"] = annotations
    template: dict[str, Any] = {"metadata": tmeta, "type": doc.get("type") or "Opaque"}
    if not isinstance(template["type"], str):
        raise InvalidInput("type must be a string")
    if doc.get("immutable") is not None:
        if not isinstance(doc["immutable"], bool):
            raise InvalidInput("immutable must be true or false")
        template["immutable"] = doc["immutable"]
    return template


def seal_secret(
    doc: Mapping[str, Any],
    public_key: rsa.RSAPublicKey,
    key_fingerprint: str,
    *,
    scope: str | None = None,
    default_namespace: str | None = None,
    allow_empty_data: bool = False,
) -> dict[str, Any]:
    """A SealedSecret dict (``secretsync.io/v1alpha1``) for a Secret dict.

    ``scope`` overrides the Secret's scope annotations; ``default_namespace`` fills a
    missing ``metadata.namespace``.
    """
    _check_secret(doc)
    meta = _mapping(doc.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("metadata.name is missing")
    namespace = meta.get("namespace") or default_namespace or ""
    if not isinstance(namespace, str):
        raise InvalidInput("metadata.namespace must be a string")
    ns_field = "metadata.namespace" if meta.get("namespace") else "-n/--namespace"
    names.check_names(name, namespace, ns_field)
    annotations = _str_map(meta.get("annotations"), "metadata.annotations")
    chosen = scope or scope_of(annotations)
    if chosen not in api.SCOPES:
        raise InvalidInput(f"unknown scope (use {', '.join(api.SCOPES)})")
    if chosen != api.SCOPE_CLUSTER and not namespace:
        raise InvalidInput(f"{chosen} scope needs a namespace (set metadata.namespace or -n)")
    items = secret_items(doc)
    if not items and not allow_empty_data:
        raise InvalidInput("the Secret has no data or stringData (use --allow-empty-data)")
    label = scope_label(chosen, namespace, name)
    encrypted = {k: encode_item(seal_item(public_key, v, label)) for k, v in items.items()}
    out_meta: dict[str, Any] = {"name": name}
    if namespace:
        out_meta["namespace"] = namespace
    out_meta["annotations"] = {
        **scope_annotations(chosen),
        api.ANN_KEY_FINGERPRINT: key_fingerprint,
    }
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND_SEALED,
        "metadata": out_meta,
        "spec": {"encryptedData": encrypted, "template": template_of(doc)},
    }


def seal_raw(
    value: bytes, public_key: rsa.RSAPublicKey, scope: str, namespace: str, name: str
) -> str:
    """One base64 item (``seal --raw``)."""
    return encode_item(seal_item(public_key, value, scope_label(scope, namespace, name)))


# --- SealedSecret -> Secret ------------------------------------------------------------------


def is_sealed_secret(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == api.KIND_SEALED and doc.get("apiVersion") in SEALED_API_VERSIONS


def sealed_label(doc: Mapping[str, Any], default_namespace: str | None = None) -> bytes:
    """The OAEP label a SealedSecret's items were sealed with (its name, namespace, scope)."""
    if not is_sealed_secret(doc):
        raise InvalidInput(
            f"not a SealedSecret (kind must be {api.KIND_SEALED}, apiVersion "
            f"{' or '.join(SEALED_API_VERSIONS)})"
        )
    meta = _mapping(doc.get("metadata"), "metadata")
    name = meta.get("name") or ""
    namespace = meta.get("namespace") or default_namespace or ""
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise InvalidInput("metadata.name and metadata.namespace must be strings")
    scope = scope_of(_mapping(meta.get("annotations"), "metadata.annotations"))
    if not name:
        raise InvalidInput("metadata.name is missing")
    if scope != api.SCOPE_CLUSTER and not namespace:
        raise InvalidInput(f"{scope} SealedSecret has no namespace (set metadata.namespace or -n)")
    return scope_label(scope, namespace, name)


def fingerprint_hint(doc: Mapping[str, Any]) -> str | None:
    ann = _mapping(_mapping(doc.get("metadata"), "metadata").get("annotations"), "annotations")
    value = ann.get(api.ANN_KEY_FINGERPRINT)
    return value if isinstance(value, str) and value else None


def encrypted_items(doc: Mapping[str, Any]) -> dict[str, bytes]:
    """``spec.encryptedData`` decoded from base64 (legacy ``spec.data`` is refused)."""
    spec = _mapping(doc.get("spec"), "spec")
    if "encryptedData" not in spec and spec.get("data"):
        raise InvalidInput("legacy spec.data (pre-v0.6 whole-Secret format) is not supported")
    enc = _mapping(spec.get("encryptedData"), "spec.encryptedData")
    return {str(k): decode_item(v, names.field("spec.encryptedData", k)) for k, v in enc.items()}


def _render(templates: dict[str, str], values: Mapping[str, bytes]) -> dict[str, bytes]:
    """``spec.template.data`` over the decrypted values, with the controller's (bounded)
    engine; Jinja2 comes with the ``controller`` extra, so without it: one clear line."""
    try:
        import jinja2  # noqa: F401
    except ImportError:
        raise InvalidInput(
            "spec.template.data needs Jinja2 to render: pip install 'secretsync[controller]'"
        ) from None
    from secretsync.reconcile.template import render_data

    return render_data(templates, values)


def secret_from_items(
    doc: Mapping[str, Any], values: Mapping[str, bytes], default_namespace: str | None = None
) -> dict[str, Any]:
    """The v1 Secret a SealedSecret stands for, given its decrypted values: name and
    namespace from the SealedSecret, labels/annotations/type/immutable from its template."""
    meta = _mapping(doc.get("metadata"), "metadata")
    spec = _mapping(doc.get("spec"), "spec")
    template = _mapping(spec.get("template"), "spec.template")
    tdata = _str_map(template.get("data"), "spec.template.data")
    if tdata:  # rendered as the controller does: recovery must give the same Secret
        values = {**values, **_render(tdata, values)}
    tmeta = _mapping(template.get("metadata"), "spec.template.metadata")
    out_meta: dict[str, Any] = {"name": meta.get("name")}
    namespace = meta.get("namespace") or default_namespace
    if namespace:
        out_meta["namespace"] = namespace
    labels = _str_map(tmeta.get("labels"), "spec.template.metadata.labels")
    annotations = _str_map(tmeta.get("annotations"), "spec.template.metadata.annotations")
    if labels:
        out_meta["labels"] = dict(labels)
    if annotations:
        out_meta["annotations"] = dict(annotations)
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": out_meta,
        "type": template.get("type") or "Opaque",
    }
    if isinstance(template.get("immutable"), bool):
        secret["immutable"] = template["immutable"]
    secret["data"] = {k: base64.b64encode(v).decode("ascii") for k, v in values.items()}
    return secret


def reseal(
    doc: Mapping[str, Any],
    values: Mapping[str, bytes],
    public_key: rsa.RSAPublicKey,
    key_fingerprint: str,
    default_namespace: str | None = None,
) -> dict[str, Any]:
    """The same SealedSecret (same name, namespace, scope, template, apiVersion, everything
    else) with ``values`` sealed to a new key, and the fingerprint annotation updated.

    Items not in ``values`` keep their ciphertext: the caller (``reencrypt``) has checked
    that they are sealed to that key already, so the annotation stays true for every item."""
    label = sealed_label(doc, default_namespace)
    out = dict(doc)
    meta = dict(_mapping(doc.get("metadata"), "metadata"))
    meta["annotations"] = {
        **_mapping(meta.get("annotations"), "metadata.annotations"),
        api.ANN_KEY_FINGERPRINT: key_fingerprint,
    }
    out["metadata"] = meta
    spec = dict(_mapping(doc.get("spec"), "spec"))
    old = _mapping(spec.get("encryptedData"), "spec.encryptedData")
    sealed = {k: encode_item(seal_item(public_key, values[k], label)) for k in values}
    # keep the original key order
    spec["encryptedData"] = {k: sealed.get(k, old[k]) for k in old} | sealed
    out["spec"] = spec
    return out


def merge_into(
    sealed_doc: Mapping[str, Any],
    secret_doc: Mapping[str, Any],
    public_key: rsa.RSAPublicKey,
    key_fingerprint: str,
) -> dict[str, Any]:
    """``sealed_doc`` with the Secret's items sealed in its own name/namespace/scope, replacing
    items of the same key and keeping the others (``seal --merge-into``).

    The ``key-fingerprint`` annotation must stay true for *every* item (``reencrypt`` and
    people read it as "this SealedSecret is on that key"). Merging with another key's
    certificate leaves the kept items on their old key, and sealing cannot re-seal them (that
    needs the old private key, which a laptop does not have). So the annotation names the new
    key only when every item is on it (it named that key already, or every item was
    replaced); otherwise it is dropped. Dropped rather than kept-old (false for the new items)
    or replaced by per-item fingerprints (a format of our own that neither Bitnami nor older
    controllers read): the annotation is only a hint, and without it the controller tries
    the newest key first -- the merged items open on the first try, the old ones on the
    next. ``reencrypt`` then moves the old items to the new key."""
    _check_secret(secret_doc)
    label = sealed_label(sealed_doc)
    items = secret_items(secret_doc)
    out = dict(sealed_doc)
    spec = dict(_mapping(sealed_doc.get("spec"), "spec"))
    enc = dict(_mapping(spec.get("encryptedData"), "spec.encryptedData"))
    uniform = fingerprint_hint(sealed_doc) == key_fingerprint or set(enc) <= set(items)
    for k, v in items.items():
        enc[k] = encode_item(seal_item(public_key, v, label))
    spec["encryptedData"] = enc
    out["spec"] = spec
    meta = dict(_mapping(sealed_doc.get("metadata"), "metadata"))
    annotations = dict(_mapping(meta.get("annotations"), "metadata.annotations"))
    if uniform:
        annotations[api.ANN_KEY_FINGERPRINT] = key_fingerprint
    else:
        annotations.pop(api.ANN_KEY_FINGERPRINT, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def first_error(
    results: Sequence[bytes | CryptoError], names: Sequence[str]
) -> tuple[str, CryptoError] | None:
    for name, result in zip(names, results, strict=True):
        if isinstance(result, CryptoError):
            return name, result
    return None
