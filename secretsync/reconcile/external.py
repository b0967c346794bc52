"""ExternalSecret -> desired Secret, write plan and status (pure functions).

The controller fetches values (see ``fetch_plan``), then everything else is decided here
from plain dicts: decoding, ``dataFrom`` rewrites, templates, the desired Secret, whether the
existing Secret must be written (and how), the status, drift. Nothing here talks to the API or
a backend, so "no churn" is a property of ``plan_secret`` and ``status_patch`` returning
``None`` for unchanged input, and it is unit-tested.

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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secretsync import api
from secretsync.backends.base import FindQuery, RemoteRef, select_property
from secretsync.errors import InvalidInput, SecretNotFound
from secretsync.reconcile import secrets
from secretsync.reconcile.external_spec import ExternalSpec
from secretsync.reconcile.template import render_data

ANN_OWNER = f"{api.GROUP}/external-secret"
ANN_MANAGED_KEYS = f"{api.GROUP}/managed-keys"
ANN_RESTARTED_AT = f"{api.GROUP}/restartedAt"
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

# --- fetching ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    """One backend call. Hashable: the single-flight key (with the store's cache key)."""

    op: str  # get | get_map | find
    key: str = ""
    property: str | None = None
    version: str | None = None
    path: str | None = None
    name_regexp: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def of_ref(op: str, ref: RemoteRef) -> Fetch:
        return Fetch(op=op, key=ref.key, property=ref.property, version=ref.version)

    def ref(self) -> RemoteRef:
        return RemoteRef(key=self.key, property=self.property, version=self.version)

    def query(self) -> FindQuery:
        return FindQuery(path=self.path, name_regexp=self.name_regexp, tags=dict(self.tags))

    def describe(self) -> str:
        if self.op == "find":
            return f"find(path={self.path!r}, name={self.name_regexp!r})"
        return (
            f"{self.key!r}"
            + (f" property {self.property!r}" if self.property else "")
            + (f" version {self.version!r}" if self.version else "")
        )


def _value_fetch(ref: RemoteRef) -> Fetch:
    # The whole value is fetched once per (key, version); ``property`` is selected here, so
    # objects reading different properties of one secret still share a single backend call.
    return Fetch(op="get", key=ref.key, version=ref.version)


def fetch_plan(spec: ExternalSpec) -> list[Fetch]:
    """The distinct backend calls this spec needs, in a stable order."""
    out: list[Fetch] = []
    for item in spec.data_from:
        if item.extract is not None:
            out.append(Fetch.of_ref("get_map", item.extract))
        elif item.find is not None:
            q = item.find
            out.append(
                Fetch(
                    op="find",
                    path=q.path,
                    name_regexp=q.name_regexp,
                    tags=tuple(sorted(q.tags.items())),
                )
            )
    for d in spec.data:
        out.append(_value_fetch(d.ref))
    seen: set[Fetch] = set()
    return [f for f in out if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]


# Result of a fetch: bytes (get), dict (get_map/find), or the typed error it raised.
FetchResult = bytes | dict[str, bytes] | Exception


def decode(value: bytes, strategy: str, *, what: str) -> bytes:
    """Apply a ``decodingStrategy``. ``Auto`` decodes only what is valid base64 (std or url)."""
    if strategy == "None":
        return value
    text = value.strip()
    try:
        if strategy == "Base64":
            return base64.b64decode(text, validate=True)
        if strategy == "Base64URL":
            return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what}: value is not valid {strategy}") from None
    url = text.translate(bytes.maketrans(b"-_", b"+/")) + b"=" * (-len(text) % 4)
    for candidate in (text, url):
        try:
            return base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            continue
    return value


_GO_GROUP = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)|\\")


def go_replacement(target: str) -> str:
    """A Go ``regexp.ReplaceAllString`` template (``$1``, ``${name}``, ``$$``) as a Python
    ``re.sub`` replacement, so rewrites written for ESO keep working."""

    def conv(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group(0) == "\\":
            return "\\\\"
        return f"\\g<{m.group(1) or m.group(2)}>"

    return _GO_GROUP.sub(conv, target)


def _rewrite(name: str, rewrites: Any, what: str) -> str:
    for rw in rewrites:
        try:
            name = re.sub(rw.source, go_replacement(rw.target), name)
        except (re.error, IndexError) as exc:
            raise InvalidInput(f"{what}: rewrite target {rw.target!r}: {exc}") from None
    return name


def _safe_key(name: str) -> str:
    """Secret data keys allow ``[-._a-zA-Z0-9]``; names from find() are paths: map '/' -> '_'."""
    return re.sub(r"[^-._a-zA-Z0-9]", "_", name)


@dataclass(frozen=True)
class Assembled:
    data: dict[str, bytes]
    missing: tuple[str, ...]  # descriptions of refs that were not found (Delete/Merge policy)


def assemble(spec: ExternalSpec, results: Mapping[Fetch, FetchResult]) -> Assembled:
    """Fetched values -> the Secret's data (before templating). ``dataFrom`` first, then
    ``data`` (which wins). Errors: the first failed fetch is raised, except SecretNotFound
    under deletionPolicy Delete/Merge, where the key is left out and reported in ``missing``.
    """
    lenient = spec.deletion_policy in ("Delete", "Merge")
    out: dict[str, bytes] = {}
    missing: list[str] = []

    def result(f: Fetch) -> FetchResult | None:
        r = results[f]
        if isinstance(r, SecretNotFound) and lenient:
            missing.append(f.describe())
            return None
        if isinstance(r, Exception):
            raise r
        return r

    for i, item in enumerate(spec.data_from):
        what = f"spec.dataFrom[{i}]"
        if item.extract is not None:
            r = result(Fetch.of_ref("get_map", item.extract))
        else:
            assert item.find is not None
            q = item.find
            r = result(
                Fetch(
                    op="find",
                    path=q.path,
                    name_regexp=q.name_regexp,
                    tags=tuple(sorted(q.tags.items())),
                )
            )
        if r is None:
            continue
        assert isinstance(r, dict)
        for name, value in r.items():
            key = _rewrite(name if item.extract else _safe_key(name), item.rewrites, what)
            if not _SECRET_KEY.match(key):
                raise InvalidInput(f"{what}: key {key!r} (after rewrite) is not a valid Secret key")
            out[key] = decode(value, item.decoding, what=f"{what} key {key!r}")
    for i, d in enumerate(spec.data):
        r = result(_value_fetch(d.ref))
        if r is None:
            continue
        assert isinstance(r, bytes)
        if d.ref.property:
            try:
                r = select_property(r, d.ref.property, what=f"secret {d.ref.key!r}")
            except SecretNotFound:
                if not lenient:
                    raise
                missing.append(f"{d.ref.key!r} property {d.ref.property!r}")
                continue
        if not _SECRET_KEY.match(d.secret_key):
            raise InvalidInput(f"spec.data[{i}].secretKey {d.secret_key!r} is not a valid key")
        out[d.secret_key] = decode(r, d.decoding, what=f"spec.data[{i}]")
    return Assembled(out, tuple(missing))


def render(spec: ExternalSpec, values: dict[str, bytes]) -> dict[str, bytes]:
    """Apply ``target.template.data`` (sandboxed Jinja2; values exposed by key)."""
    t = spec.template
    if t is None or not t.data:
        return values
    rendered = render_data(dict(t.data), values)
    if t.merge_policy == "Merge":
        return {**values, **rendered}
    return rendered


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


@dataclass(frozen=True)
class SecretPlan:
    """What to do with the target Secret. ``action``: none | create | patch | recreate |
    delete | blocked (``message`` says why, for the status)."""

    action: str
    body: dict[str, Any] | None = None
    message: str = ""


def owned_by(secret: Mapping[str, Any], es_name: str) -> bool:
    meta = secret.get("metadata") or {}
    return (meta.get("annotations") or {}).get(ANN_OWNER) == es_name


def plan_secret(
    existing: Mapping[str, Any] | None, desired: Mapping[str, Any], spec: ExternalSpec, es_name: str
) -> SecretPlan:
    """Decide the write. Returns ``none`` when the existing Secret already matches (the no-churn
    rule): same managed data, same type, our labels and annotations present."""
    policy = spec.creation_policy
    if policy == "None":
        return SecretPlan("none")
    dmeta = desired["metadata"]
    blocked = blocked_reason(existing, spec, es_name, owner_uid=_owner_uid(desired))
    if blocked:
        return SecretPlan("blocked", message=blocked)
    if existing is None:
        return SecretPlan("create", dict(desired))
    emeta = existing.get("metadata") or {}
    eann = emeta.get("annotations") or {}
    edata = dict(existing.get("data") or {})
    ddata = desired.get("data") or {}
    patch: dict[str, Any] = {}
    if policy == "Merge":
        old_keys = set(filter(None, str(eann.get(ANN_MANAGED_KEYS, "")).split(",")))
        data_patch: dict[str, Any] = {k: v for k, v in ddata.items() if edata.get(k) != v}
        data_patch.update({k: None for k in old_keys - set(ddata) if k in edata})
        if data_patch:
            patch["data"] = data_patch
    else:
        if edata != ddata:
            patch["data"] = {**{k: None for k in edata if k not in ddata}, **ddata}
        if (existing.get("type") or "Opaque") != desired["type"] or (
            bool(existing.get("immutable")) and not desired.get("immutable")
        ):
            return SecretPlan("recreate", dict(desired), "type or immutability changed")
    labels = {
        k: v
        for k, v in (dmeta.get("labels") or {}).items()
        if (emeta.get("labels") or {}).get(k) != v
    }
    anns = {k: v for k, v in (dmeta.get("annotations") or {}).items() if eann.get(k) != v}
    if labels or anns:
        patch["metadata"] = {}
        if labels:
            patch["metadata"]["labels"] = labels
        if anns:
            patch["metadata"]["annotations"] = anns
    if policy == "Owner" and not _has_owner_ref(emeta, desired):
        patch.setdefault("metadata", {})["ownerReferences"] = [
            *[r for r in emeta.get("ownerReferences") or [] if not r.get("controller")],
            *dmeta["ownerReferences"],
        ]
    if not patch:
        return SecretPlan("none")
    if existing.get("immutable") and "data" in patch:
        return SecretPlan("recreate", dict(desired), "immutable Secret's data changed")
    return SecretPlan("patch", patch)


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


def _has_owner_ref(emeta: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    want = desired["metadata"]["ownerReferences"][0]["uid"]
    return any(r.get("uid") == want for r in emeta.get("ownerReferences") or [])


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
