"""The one contract every secret backend implements (Vault, AWS, GCP, Azure, ...).

Modelled on a small provider interface: build a client from a store spec, validate it, get
one value, get a map, find many. Backends import only their own SDK, this module and
``secretsync.errors``; every SDK exception is translated at the call site into
``SecretNotFound`` / ``BackendAuthError`` / ``BackendUnavailable`` (``raise ... from exc``),
with messages that never contain secret values or response bodies.

A backend is built once per store (and reused across reconciles) and closed on cleanup.
Sync SDKs run their calls via ``asyncio.to_thread``; async SDKs are awaited directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Resolves a Kubernetes Secret key the store references (e.g. a token or access key):
# (namespace, secret name, key) -> value bytes. Raises BackendAuthError/StoreInvalid when absent.
SecretResolver = Callable[[str, str, str], Awaitable[bytes]]


class TokenRequester(Protocol):
    """Requests a service-account token: (namespace, service account, audiences) -> JWT;
    ``expiration_seconds`` (optional) asks for that lifetime instead of the controller's."""

    def __call__(
        self,
        namespace: str,
        service_account: str,
        audiences: list[str],
        /,
        expiration_seconds: int | None = None,
    ) -> Awaitable[str]: ...


# Reads a ServiceAccount's annotations: (namespace, service account) -> annotations.
# Raises BackendAuthError/StoreInvalid when it cannot be read or does not exist.
ServiceAccountReader = Callable[[str, str], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True)
class StoreContext:
    """Everything a backend needs to build its client, without talking to Kubernetes itself.

    ``provider`` is the provider block of the store (e.g. ``spec.provider.vault``);
    ``namespace`` is where secret references without an explicit namespace are looked up
    (the store's namespace, or for a ClusterSecretStore the ExternalSecret's namespace when
    the reference omits one).
    """

    store_kind: str
    store_name: str
    namespace: str
    provider: Mapping[str, Any]
    resolve_secret: SecretResolver
    request_token: TokenRequester | None = None
    read_service_account: ServiceAccountReader | None = None


@dataclass(frozen=True)
class RemoteRef:
    """One remote value: ``key`` (path/name), optional ``property`` (a gjson path into a JSON
    value, see ``gjson_path``), optional ``version``. ``metadata_policy`` is reserved."""

    key: str
    property: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class FindQuery:
    """Find many secrets: under ``path`` (prefix), whose name matches ``name_regexp``, and
    carrying all of ``tags``. Returns name -> value."""

    path: str | None = None
    name_regexp: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A connected backend client for one store."""

    async def validate(self) -> None:
        """Check that the store is usable (credentials, reachability) without reading a
        secret where the API allows it. Raises BackendError subclasses."""

    async def get(self, ref: RemoteRef) -> bytes:
        """One value. With ``ref.property`` the value is parsed as JSON and the dotted path
        selected (strings as UTF-8, other JSON values re-serialised)."""

    async def get_map(self, ref: RemoteRef) -> dict[str, bytes]:
        """A secret holding several key/value pairs (a JSON object / a KV entry), flattened
        one level: key -> value bytes (``dataFrom.extract``)."""

    async def find(self, query: FindQuery) -> dict[str, bytes]:
        """Many secrets by path / name pattern / tags: name -> value (``dataFrom.find``)."""

    async def close(self) -> None:
        """Release clients, sessions and connections."""


# Entry points in group "secretsync.backends" name a callable of this type. The key of the
# entry point is the provider key in the store spec (``vault``, ``aws``, ``gcpsm``, ``azurekv``).
BackendFactory = Callable[[StoreContext], Awaitable[Backend]]


# --- helpers shared by backends (pure) ---------------------------------------------------


def _json_value_bytes(value: Any) -> bytes:
    import json

    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def select_property(raw: bytes, prop: str, *, what: str) -> bytes:
    """Select ``prop`` from a JSON value with gjson's path syntax (``a.b``, ``friends.1.first``,
    ``a\\.b``, ``children.#``, ``friends.#.first``; see ``gjson_path``). A top-level key that
    literally equals ``prop`` (dots included) wins over the path, as in ESO. Strings come out
    as UTF-8, other JSON values as compact JSON. ``what`` names the secret for the error message
    (never the value)."""
    import json

    from secretsync.backends import gjson_path
    from secretsync.errors import InvalidInput, SecretNotFound

    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SecretNotFound(f"{what}: property {prop!r} requested but value is not JSON") from exc
    if isinstance(doc, dict) and prop in doc:
        return _json_value_bytes(doc[prop])
    try:
        found = gjson_path.get(doc, prop)
    except gjson_path.UnsupportedPath as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    if found is gjson_path.MISSING:
        raise SecretNotFound(f"{what}: property {prop!r} not found")
    return _json_value_bytes(found)


def json_map(raw: bytes, *, what: str) -> dict[str, bytes]:
    """Flatten a JSON object one level to key -> bytes (for ``dataFrom.extract``)."""
    import json

    from secretsync.errors import SecretNotFound

    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SecretNotFound(f"{what}: value is not a JSON object, cannot extract") from exc
    if not isinstance(doc, dict):
        raise SecretNotFound(f"{what}: value is not a JSON object, cannot extract")
    return {str(k): _json_value_bytes(v) for k, v in doc.items()}
