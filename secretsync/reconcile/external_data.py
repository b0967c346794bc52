"""ExternalSecret: the backend reads it needs and the data they make (pure functions).

The controller asks ``fetch_plan`` which distinct backend calls a spec needs (the single-flight
and per-cycle cache work on these ``Fetch`` keys), runs them, and hands the results to
``assemble``: decoding strategies, ``dataFrom`` keys (rewrites and conversion in ESO's order,
``reconcile.external_keys``), ``property`` selection (gjson paths), the
missing-key rules of ``deletionPolicy``. ``render`` then applies the target template. What
becomes of that data (the Secret, its write plan, drift) is ``reconcile.external``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from secretsync.backends.base import FindQuery, RemoteRef, select_property
from secretsync.errors import InvalidInput, SecretNotFound
from secretsync.reconcile import gotemplate
from secretsync.reconcile.external_keys import SECRET_KEY, entry_keys
from secretsync.reconcile.external_spec import ExternalSpec
from secretsync.reconcile.template import render_data


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
        keyed = entry_keys(r, item.rewrites, item.conversion, what=what)
        for key, value in keyed.items():
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
        if not SECRET_KEY.match(d.secret_key):
            raise InvalidInput(f"spec.data[{i}].secretKey {d.secret_key!r} is not a valid key")
        out[d.secret_key] = decode(r, d.decoding, what=f"spec.data[{i}]")
    return Assembled(out, tuple(missing))


def render(spec: ExternalSpec, values: dict[str, bytes]) -> dict[str, bytes]:
    """Apply ``target.template.data``: ESO's Go templates for ``engineVersion: v2``
    (``reconcile.gotemplate``), else sandboxed Jinja2; values exposed by key, bytes kept."""
    t = spec.template
    if t is None or not t.data:
        return values
    engine = gotemplate.render_data if t.engine == "go" else render_data
    rendered = engine(dict(t.data), values)
    if t.merge_policy == "Merge":
        return {**values, **rendered}
    return rendered
