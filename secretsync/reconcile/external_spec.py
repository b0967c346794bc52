"""Parse and validate an ExternalSecret spec into typed, immutable values (pure).

Field names follow external-secrets.io/v1, so an ESO manifest works after changing its
``apiVersion``. Every problem becomes one ``InvalidInput`` naming the field, so the handler
can set ``Ready=False, reason=InvalidSpec`` and an Event without a traceback. Durations are
Go-style (``1h30m``, ``15s``, ``500ms``, ``0`` = never).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secretsync.backends import gjson_path
from secretsync.backends.base import FindQuery, RemoteRef
from secretsync.errors import InvalidInput
from secretsync.reconcile import go_regexp
from secretsync.reconcile.external_merge import (
    CONFLICT_POLICIES,
    PRIORITY_POLICIES,
    STRATEGIES,
    MergeRewrite,
)

DEFAULT_REFRESH = 3600.0
CREATION_POLICIES = ("Owner", "Orphan", "Merge", "None")
DELETION_POLICIES = ("Retain", "Delete", "Merge")
REFRESH_POLICIES = ("Periodic", "OnChange", "CreatedOnce")
DECODING = ("None", "Base64", "Base64URL", "Auto")
CONVERSION = ("Default", "Unicode")
RESTART_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
STORE_KINDS = ("SecretStore", "ClusterSecretStore")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float | None, *, what: str = "duration") -> float:
    """Seconds from a Go duration string. ``"0"`` (or 0) means zero; no unit is an error
    except for the bare ``0``."""
    if text is None:
        raise InvalidInput(f"{what}: missing duration")
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise InvalidInput(f"{what}: negative duration")
        return float(text)
    s = str(text).strip()
    if s in ("0", "0s"):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise InvalidInput(f"{what}: invalid duration {s!r} (use e.g. 1h30m, 15s, 0)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise InvalidInput(f"{what}: empty duration")
    return total


@dataclass(frozen=True)
class DataItem:
    secret_key: str
    ref: RemoteRef
    decoding: str = "None"


@dataclass(frozen=True)
class Rewrite:
    """``rewrite[].regexp``: ``source`` (RE2/Go syntax, checked) -> ``target`` (Go ``$``
    template)."""

    source: str
    target: str


@dataclass(frozen=True)
class DataFromItem:
    extract: RemoteRef | None = None
    find: FindQuery | None = None
    decoding: str = "None"
    rewrites: tuple[Rewrite | MergeRewrite, ...] = ()
    conversion: str = "Default"  # key conversion, applied only when there are no rewrites


@dataclass(frozen=True)
class Template:
    type: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    data: tuple[tuple[str, str], ...] = ()
    merge_policy: str = "Replace"  # Replace: only templated keys; Merge: templated + fetched
    engine: str = "jinja2"  # engineVersion v2 -> "go" (ESO's Go text/template + sprig)


_ENGINES = {"": "jinja2", "v2": "go"}
"""``engineVersion``: ``v2`` is ESO's Go text/template engine; unset keeps the Jinja2 templates
secretsync has always rendered (ESO's deprecated ``v1`` engine is not offered)."""


@dataclass(frozen=True)
class RestartTarget:
    kind: str
    name: str


@dataclass(frozen=True)
class ExternalSpec:
    store_name: str
    store_kind: str
    target_name: str
    creation_policy: str = "Owner"
    deletion_policy: str = "Retain"
    immutable: bool = False
    template: Template | None = None
    refresh_interval: float = DEFAULT_REFRESH
    refresh_policy: str = "Periodic"
    data: tuple[DataItem, ...] = ()
    data_from: tuple[DataFromItem, ...] = ()
    restart_targets: tuple[RestartTarget, ...] = field(default_factory=tuple)


def _str(value: Any, what: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{what} is required")
        return None
    if not isinstance(value, str | int):
        raise InvalidInput(f"{what} must be a string")
    return str(value)


def _choice(value: Any, choices: tuple[str, ...], default: str, what: str) -> str:
    if value is None or value == "":
        return default
    if value not in choices:
        raise InvalidInput(f"{what} must be one of {', '.join(choices)} (got {value!r})")
    return str(value)


def _remote_ref(block: Any, what: str) -> RemoteRef:
    if not isinstance(block, Mapping):
        raise InvalidInput(f"{what} must be an object")
    key = _str(block.get("key"), f"{what}.key")
    assert key is not None
    prop = _str(block.get("property"), f"{what}.property", required=False)
    if prop is not None:
        try:
            gjson_path.check(prop)
        except gjson_path.UnsupportedPath as exc:
            raise InvalidInput(f"{what}.property: {exc}") from None
    return RemoteRef(
        key=key,
        property=prop,
        version=_str(block.get("version"), f"{what}.version", required=False),
    )


def _pairs(block: Any, what: str) -> tuple[tuple[str, str], ...]:
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise InvalidInput(f"{what} must be a map of strings")
    return tuple(sorted((str(k), str(v)) for k, v in block.items()))


def _regexp(pattern: str, what: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidInput(f"{what}: invalid regular expression ({exc.msg})") from None
    return pattern


def parse_spec(obj: Mapping[str, Any]) -> ExternalSpec:
    """``obj`` is the whole ExternalSecret. Raises InvalidInput naming the bad field."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidInput("spec is missing")
    store = spec.get("secretStoreRef")
    if not isinstance(store, Mapping):
        raise InvalidInput("spec.secretStoreRef is required")
    store_name = _str(store.get("name"), "spec.secretStoreRef.name")
    store_kind = _choice(store.get("kind"), STORE_KINDS, "SecretStore", "spec.secretStoreRef.kind")
    target = spec.get("target") or {}
    if not isinstance(target, Mapping):
        raise InvalidInput("spec.target must be an object")
    target_name = _str(target.get("name"), "spec.target.name", required=False) or str(
        meta.get("name") or ""
    )
    creation = _choice(
        target.get("creationPolicy"), CREATION_POLICIES, "Owner", "spec.target.creationPolicy"
    )
    deletion = _choice(
        target.get("deletionPolicy"), DELETION_POLICIES, "Retain", "spec.target.deletionPolicy"
    )
    template = _template(target.get("template"))
    data = tuple(_data_item(d, f"spec.data[{i}]") for i, d in enumerate(spec.get("data") or []))
    data_from = tuple(
        _data_from_item(d, f"spec.dataFrom[{i}]") for i, d in enumerate(spec.get("dataFrom") or [])
    )
    if not data and not data_from and not (template and template.data):
        raise InvalidInput("spec needs data, dataFrom or target.template.data")
    keys = [d.secret_key for d in data]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InvalidInput(f"spec.data: secretKey {dupes[0]!r} appears more than once")
    interval = spec.get("refreshInterval")
    refresh = (
        DEFAULT_REFRESH
        if interval is None
        else parse_duration(interval, what="spec.refreshInterval")
    )
    restarts = []
    for i, t in enumerate(spec.get("rolloutRestartTargets") or []):
        if not isinstance(t, Mapping):
            raise InvalidInput(f"spec.rolloutRestartTargets[{i}] must be an object")
        kind = _choice(t.get("kind"), RESTART_KINDS, "", f"spec.rolloutRestartTargets[{i}].kind")
        if not kind:
            raise InvalidInput(f"spec.rolloutRestartTargets[{i}].kind is required")
        name = _str(t.get("name"), f"spec.rolloutRestartTargets[{i}].name")
        assert name is not None
        restarts.append(RestartTarget(kind, name))
    assert store_name is not None
    return ExternalSpec(
        store_name=store_name,
        store_kind=store_kind,
        target_name=target_name,
        creation_policy=creation,
        deletion_policy=deletion,
        immutable=bool(target.get("immutable") or False),
        template=template,
        refresh_interval=refresh,
        refresh_policy=_choice(
            spec.get("refreshPolicy"), REFRESH_POLICIES, "Periodic", "spec.refreshPolicy"
        ),
        data=data,
        data_from=data_from,
        restart_targets=tuple(restarts),
    )


def _data_item(block: Any, what: str) -> DataItem:
    if not isinstance(block, Mapping):
        raise InvalidInput(f"{what} must be an object")
    key = _str(block.get("secretKey"), f"{what}.secretKey")
    assert key is not None
    ref_block = block.get("remoteRef")
    ref = _remote_ref(ref_block, f"{what}.remoteRef")
    assert isinstance(ref_block, Mapping)
    decoding = _choice(
        ref_block.get("decodingStrategy"), DECODING, "None", f"{what}.remoteRef.decodingStrategy"
    )
    return DataItem(key, ref, decoding)


def _data_from_item(block: Any, what: str) -> DataFromItem:
    if not isinstance(block, Mapping):
        raise InvalidInput(f"{what} must be an object")
    extract, find = block.get("extract"), block.get("find")
    if bool(extract) == bool(find):
        raise InvalidInput(f"{what} needs exactly one of extract, find")
    rewrites = [
        _rewrite(rw, f"{what}.rewrite[{j}]") for j, rw in enumerate(block.get("rewrite") or [])
    ]
    inner = extract if extract else find
    if not isinstance(inner, Mapping):
        raise InvalidInput(f"{what}: extract/find must be an object")
    kind = "extract" if extract else "find"
    decoding = _choice(
        inner.get("decodingStrategy"), DECODING, "None", f"{what}.{kind}.decodingStrategy"
    )
    conversion = _choice(
        inner.get("conversionStrategy"),
        CONVERSION,
        "Default",
        f"{what}.{kind}.conversionStrategy",
    )
    if extract:
        return DataFromItem(
            extract=_remote_ref(extract, f"{what}.extract"),
            decoding=decoding,
            rewrites=tuple(rewrites),
            conversion=conversion,
        )
    assert isinstance(find, Mapping)
    name = find.get("name") or {}
    regexp = _str(name.get("regexp"), f"{what}.find.name.regexp", required=False)
    if regexp:
        _regexp(regexp, f"{what}.find.name.regexp")
    tags = dict(_pairs(find.get("tags"), f"{what}.find.tags"))
    path = _str(find.get("path"), f"{what}.find.path", required=False)
    if not (regexp or tags or path):
        raise InvalidInput(f"{what}.find needs path, name.regexp or tags")
    return DataFromItem(
        find=FindQuery(path=path, name_regexp=regexp, tags=tags),
        decoding=decoding,
        rewrites=tuple(rewrites),
        conversion=conversion,
    )


def _rewrite(rw: Any, what: str) -> Rewrite | MergeRewrite:
    """One ``rewrite[]`` operation: exactly one of ``regexp`` and ``merge``."""
    if not isinstance(rw, Mapping):
        raise InvalidInput(f"{what} must be an object")
    if "transform" in rw:
        raise InvalidInput(f"{what}.transform (a Go template) is not supported yet")
    rx, mg = rw.get("regexp"), rw.get("merge")
    if (rx is None) == (mg is None):
        raise InvalidInput(f"{what} needs exactly one of regexp {{source, target}}, merge")
    if mg is not None:
        if not isinstance(mg, Mapping):
            raise InvalidInput(f"{what}.merge must be an object")
        priority = mg.get("priority") or []
        if not isinstance(priority, list) or not all(isinstance(p, str) for p in priority):
            raise InvalidInput(f"{what}.merge.priority must be a list of strings")
        op = MergeRewrite(
            into=_str(mg.get("into"), f"{what}.merge.into", required=False) or "",
            priority=tuple(priority),
            priority_policy=_choice(
                mg.get("priorityPolicy"),
                PRIORITY_POLICIES,
                "Strict",
                f"{what}.merge.priorityPolicy",
            ),
            conflict_policy=_choice(
                mg.get("conflictPolicy"), CONFLICT_POLICIES, "Error", f"{what}.merge.conflictPolicy"
            ),
            strategy=_choice(mg.get("strategy"), STRATEGIES, "Extract", f"{what}.merge.strategy"),
        )
        if op.strategy == "JSON" and not op.into:
            raise InvalidInput(f"{what}.merge.into is required with strategy JSON")
        return op
    if not isinstance(rx, Mapping):
        raise InvalidInput(f"{what}.regexp must be an object {{source, target}}")
    source = _str(rx.get("source"), f"{what}.regexp.source")
    assert source is not None
    target = rx.get("target")
    if not isinstance(target, str):
        raise InvalidInput(f"{what}.regexp.target must be a string")
    return Rewrite(go_regexp.check(source, what=f"{what}.regexp.source"), target)


def _template(block: Any) -> Template | None:
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise InvalidInput("spec.target.template must be an object")
    meta = block.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise InvalidInput("spec.target.template.metadata must be an object")
    data = _pairs(block.get("data"), "spec.target.template.data")
    return Template(
        type=_str(block.get("type"), "spec.target.template.type", required=False),
        labels=_pairs(meta.get("labels"), "spec.target.template.metadata.labels"),
        annotations=_pairs(meta.get("annotations"), "spec.target.template.metadata.annotations"),
        data=data,
        merge_policy=_choice(
            block.get("mergePolicy"),
            ("Replace", "Merge"),
            "Replace",
            "spec.target.template.mergePolicy",
        ),
        engine=_ENGINES[_choice(block.get("engineVersion"), ("v2",), "",
                                "spec.target.template.engineVersion")],
    )
