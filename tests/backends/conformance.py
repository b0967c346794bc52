"""The conformance test class every backend's tests subclass and run against its real server.

Usage (one subclass per backend, in that backend's integration test module)::

    class TestVaultConformance(BackendConformance):
        supports_versions = True           # feature flags, see below

        @pytest.fixture
        async def backend_factory(self, ...):   # async () -> Backend with good credentials
            ...
        @pytest.fixture
        async def bad_auth_backend(self, ...):  # a Backend whose credentials the server rejects
            ...
        @pytest.fixture
        async def unreachable_backend(self):    # a Backend pointed at a closed port (short timeout)
            ...
        @pytest.fixture
        def write(self, ...):   # (name, value: str) -> version id or None; sync or async
        @pytest.fixture
        def rotate(self, ...):  # (name, value: str) -> new version id or None; sync or async
        @pytest.fixture
        def delete(self, ...):  # (name) -> None; sync or async

Values written by the tests are JSON objects (serialised to a string), so key/value stores
(Vault KV) and string stores (AWS/GCP/Azure) can run the same tests: ``get`` without a
property must return a JSON document equal to what was written.

Feature flags (class attributes) switch whole tests off for backends whose *server* cannot
do something; a disabled test is removed from the subclass (not skipped), so a flag is a
documented statement about the backend. Where a backend lacks a feature the tests still check
it fails with a clear typed error instead of returning something wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar

import pytest

from secretsync.backends.base import Backend, FindQuery, RemoteRef, SecretResolver
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    SecretNotFound,
    SecretSyncError,
)

# Every secret written by the tests contains this, so leak checks can look for it.
SENTINEL = "s3ntinel-Plaintext-5b1f"

# A test that waits longer than this on one backend call is a hang, not a slow server.
CALL_TIMEOUT = 60.0


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def dict_resolver(secrets: Mapping[tuple[str, str, str], bytes]) -> SecretResolver:
    """A Kubernetes Secret lookup over a dict, keyed (namespace, name, key), for building
    backends in tests (the controller's resolver reads the API); a missing key is an auth
    error, as in the controller."""

    async def resolve(namespace: str, name: str, key: str) -> bytes:
        try:
            return secrets[(namespace, name, key)]
        except KeyError:
            raise BackendAuthError(f"Secret {namespace}/{name} has no key {key!r}") from None

    return resolve


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def assert_no_leak(exc: BaseException, *secrets: str) -> None:
    """Neither the error nor anything in its cause chain may contain a secret value."""
    for e in _chain(exc):
        text = f"{e!s} {e!r}"
        for s in (SENTINEL, *secrets):
            assert s not in text, f"secret value leaked in {type(e).__name__}: {text[:200]}"


class BackendConformance:
    """Abstract: collected only through subclasses (its name does not start with ``Test``)."""

    # --- feature flags ---------------------------------------------------------------------
    supports_versions: ClassVar[bool] = True  # get a specific (older) version by id
    supports_find_by_name: ClassVar[bool] = True
    supports_find_by_path: ClassVar[bool] = True  # names are paths; find under a prefix
    supports_find_by_tags: ClassVar[bool] = False
    # Sandbox servers that accept any credentials (moto, lowkey-vault) cannot be tested for
    # BackendAuthError; such a subclass sets this False and says why in a comment.
    server_checks_credentials: ClassVar[bool] = True
    # Separator used to build path-like names for find-by-path tests.
    path_separator: ClassVar[str] = "/"

    _FLAGGED: ClassVar[dict[str, tuple[str, ...]]] = {
        "supports_versions": ("test_get_specific_version", "test_missing_version_not_found"),
        "supports_find_by_name": ("test_find_by_name_regexp",),
        "supports_find_by_path": ("test_find_by_path",),
        "supports_find_by_tags": ("test_find_by_tags",),
        "server_checks_credentials": ("test_bad_credentials_get", "test_bad_credentials_validate"),
    }
    # tests that only make sense when the flag is OFF (the feature must be refused clearly)
    _FLAGGED_OFF: ClassVar[dict[str, tuple[str, ...]]] = {
        "supports_versions": ("test_versions_unsupported_rejected",),
        "supports_find_by_tags": ("test_find_by_tags_unsupported_rejected",),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for flag, tests in BackendConformance._FLAGGED.items():
            if not getattr(cls, flag):
                for name in tests:
                    setattr(cls, name, None)  # pytest collects only callables
        for flag, tests in BackendConformance._FLAGGED_OFF.items():
            if getattr(cls, flag):
                for name in tests:
                    setattr(cls, name, None)

    # --- fixtures subclasses must provide ---------------------------------------------------
    @pytest.fixture
    def backend_factory(self) -> Callable[[], Awaitable[Backend]]:
        raise NotImplementedError("subclass must provide the backend_factory fixture")

    @pytest.fixture
    async def bad_auth_backend(self) -> Backend:
        raise NotImplementedError("subclass must provide the bad_auth_backend fixture")

    @pytest.fixture
    async def unreachable_backend(self) -> Backend:
        raise NotImplementedError("subclass must provide the unreachable_backend fixture")

    @pytest.fixture
    def write(self) -> Callable[[str, str], Any]:
        raise NotImplementedError("subclass must provide the write fixture")

    @pytest.fixture
    def rotate(self) -> Callable[[str, str], Any]:
        raise NotImplementedError("subclass must provide the rotate fixture")

    @pytest.fixture
    def delete(self) -> Callable[[str], Any]:
        raise NotImplementedError("subclass must provide the delete fixture")

    @pytest.fixture
    def write_tagged(self) -> Callable[[str, str, dict[str, str]], Any]:
        """Only needed when ``supports_find_by_tags``: (name, value, tags) -> version."""
        raise NotImplementedError("subclass must provide write_tagged when it supports tags")

    # --- fixtures provided here -------------------------------------------------------------
    @pytest.fixture
    def unique_name(self) -> str:
        """A name no other test uses (letters, digits and dashes only: valid everywhere)."""
        return f"conf-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    async def backend(
        self, backend_factory: Callable[[], Awaitable[Backend]]
    ) -> AsyncIterator[Backend]:
        b = await backend_factory()
        try:
            yield b
        finally:
            await b.close()

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    async def put(hook: Callable[..., Any], *args: Any) -> str | None:
        result = await _maybe_await(hook(*args))
        return None if result is None else str(result)

    @staticmethod
    async def call(aw: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(aw, CALL_TIMEOUT)

    # --- the tests ------------------------------------------------------------------------------
    async def test_is_a_backend(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)

    async def test_get_latest(
        self, backend: Backend, write: Any, rotate: Any, unique_name: str
    ) -> None:
        await self.put(write, unique_name, json.dumps({"v": "one", "s": SENTINEL}))
        got = await self.call(backend.get(RemoteRef(key=unique_name)))
        assert isinstance(got, bytes)
        assert json.loads(got) == {"v": "one", "s": SENTINEL}
        await self.put(rotate, unique_name, json.dumps({"v": "two", "s": SENTINEL}))
        got = await self.call(backend.get(RemoteRef(key=unique_name)))
        assert json.loads(got) == {"v": "two", "s": SENTINEL}

    async def test_get_specific_version(
        self, backend: Backend, write: Any, rotate: Any, unique_name: str
    ) -> None:
        v1 = await self.put(write, unique_name, json.dumps({"v": "one"}))
        v2 = await self.put(rotate, unique_name, json.dumps({"v": "two"}))
        assert v1 and v2 and v1 != v2, "write/rotate hooks must return distinct version ids"
        old = await self.call(backend.get(RemoteRef(key=unique_name, version=v1)))
        new = await self.call(backend.get(RemoteRef(key=unique_name, version=v2)))
        assert json.loads(old) == {"v": "one"}
        assert json.loads(new) == {"v": "two"}
        prop = await self.call(backend.get(RemoteRef(key=unique_name, property="v", version=v1)))
        assert prop == b"one"

    async def test_missing_version_not_found(
        self, backend: Backend, write: Any, unique_name: str
    ) -> None:
        await self.put(write, unique_name, json.dumps({"s": SENTINEL}))
        with pytest.raises(SecretNotFound) as info:
            await self.call(backend.get(RemoteRef(key=unique_name, version="987654")))
        assert_no_leak(info.value)

    async def test_property_dotted_path(
        self, backend: Backend, write: Any, unique_name: str
    ) -> None:
        doc = {
            "user": "admin",
            "db": {"password": SENTINEL, "port": 5432, "opts": {"ssl": True}},
            "dotted.key": "literal",
        }
        await self.put(write, unique_name, json.dumps(doc))
        get = backend.get
        assert await self.call(get(RemoteRef(key=unique_name, property="user"))) == b"admin"
        assert await self.call(get(RemoteRef(key=unique_name, property="db.password"))) == (
            SENTINEL.encode()
        )
        # non-string JSON values come back re-serialised as JSON
        assert await self.call(get(RemoteRef(key=unique_name, property="db.port"))) == b"5432"
        opts = await self.call(get(RemoteRef(key=unique_name, property="db.opts")))
        assert json.loads(opts) == {"ssl": True}
        # a top-level key that literally contains a dot wins over the path
        assert await self.call(get(RemoteRef(key=unique_name, property="dotted.key"))) == b"literal"

    async def test_property_gjson_paths(
        self, backend: Backend, write: Any, unique_name: str
    ) -> None:
        """``property`` is a gjson path, as in ESO: array indexes, ``#``, ``#.field``, ``\\.``."""
        doc = {"friends": [{"first": "Dale"}, {"first": SENTINEL}], "a.b": {"c": "d"}}
        await self.put(write, unique_name, json.dumps(doc))
        get = backend.get
        assert await self.call(get(RemoteRef(key=unique_name, property="friends.1.first"))) == (
            SENTINEL.encode()
        )
        assert await self.call(get(RemoteRef(key=unique_name, property="friends.#"))) == b"2"
        got = await self.call(get(RemoteRef(key=unique_name, property="friends.#.first")))
        assert json.loads(got) == ["Dale", SENTINEL]
        assert await self.call(get(RemoteRef(key=unique_name, property="a\\.b.c"))) == b"d"
        with pytest.raises(SecretNotFound) as info:
            await self.call(get(RemoteRef(key=unique_name, property="friends.2.first")))
        assert_no_leak(info.value)

    async def test_missing_property_not_found(
        self, backend: Backend, write: Any, unique_name: str
    ) -> None:
        await self.put(write, unique_name, json.dumps({"user": SENTINEL}))
        with pytest.raises(SecretNotFound) as info:
            await self.call(backend.get(RemoteRef(key=unique_name, property="nope.deeper")))
        assert "nope.deeper" in str(info.value)
        assert_no_leak(info.value)

    async def test_get_map(self, backend: Backend, write: Any, unique_name: str) -> None:
        doc = {"a": "1", "b": {"c": 2}, "s": SENTINEL}
        await self.put(write, unique_name, json.dumps(doc))
        got = await self.call(backend.get_map(RemoteRef(key=unique_name)))
        assert set(got) == {"a", "b", "s"}
        assert got["a"] == b"1"
        assert json.loads(got["b"]) == {"c": 2}
        assert got["s"] == SENTINEL.encode()
        assert all(isinstance(v, bytes) for v in got.values())

    async def test_get_map_missing_not_found(self, backend: Backend, unique_name: str) -> None:
        with pytest.raises(SecretNotFound):
            await self.call(backend.get_map(RemoteRef(key=unique_name + "-absent")))

    async def test_find_by_name_regexp(
        self, backend: Backend, write: Any, unique_name: str
    ) -> None:
        names = [f"{unique_name}-alpha", f"{unique_name}-alpine", f"{unique_name}-beta"]
        for n in names:
            await self.put(write, n, json.dumps({"n": n}))
        query = FindQuery(name_regexp=f"^{re.escape(unique_name)}-al")
        found = await self.call(backend.find(query))
        assert set(found) == set(names[:2])
        for n in names[:2]:
            assert json.loads(found[n]) == {"n": n}
        none = await self.call(backend.find(FindQuery(name_regexp=f"^{unique_name}-zzz")))
        assert none == {}

    async def test_find_by_path(self, backend: Backend, write: Any, unique_name: str) -> None:
        sep = self.path_separator
        inside = [f"{unique_name}{sep}app{sep}one", f"{unique_name}{sep}app{sep}two"]
        outside = f"{unique_name}{sep}other"
        for n in [*inside, outside]:
            await self.put(write, n, json.dumps({"n": n}))
        found = await self.call(backend.find(FindQuery(path=f"{unique_name}{sep}app")))
        assert set(found) == set(inside)
        assert json.loads(found[inside[0]]) == {"n": inside[0]}
        both = await self.call(backend.find(FindQuery(path=unique_name, name_regexp="one$")))
        assert set(both) == {inside[0]}

    async def test_find_by_tags(
        self, backend: Backend, write_tagged: Any, unique_name: str
    ) -> None:
        await self.put(
            write_tagged, f"{unique_name}-a", json.dumps({"n": 1}), {"team": unique_name}
        )
        await self.put(write_tagged, f"{unique_name}-b", json.dumps({"n": 2}), {"team": "other"})
        found = await self.call(backend.find(FindQuery(tags={"team": unique_name})))
        assert set(found) == {f"{unique_name}-a"}

    async def test_find_by_tags_unsupported_rejected(self, backend: Backend) -> None:
        with pytest.raises(BackendError) as info:
            await self.call(backend.find(FindQuery(tags={"team": "x"})))
        assert "tag" in str(info.value).lower()

    async def test_versions_unsupported_rejected(
        self, backend: Backend, write: Any, unique_name: str
    ) -> None:
        await self.put(write, unique_name, json.dumps({"s": SENTINEL}))
        with pytest.raises(BackendError) as info:
            await self.call(backend.get(RemoteRef(key=unique_name, version="1")))
        assert "version" in str(info.value).lower()
        assert_no_leak(info.value)

    async def test_not_found(self, backend: Backend, unique_name: str) -> None:
        with pytest.raises(SecretNotFound) as info:
            await self.call(backend.get(RemoteRef(key=unique_name + "-absent")))
        assert unique_name in str(info.value), "the error should name the missing key"
        assert "\n" not in str(info.value), "errors are one line"

    async def test_deleted_is_not_found(
        self, backend: Backend, write: Any, delete: Any, unique_name: str
    ) -> None:
        await self.put(write, unique_name, json.dumps({"s": SENTINEL}))
        await _maybe_await(delete(unique_name))
        with pytest.raises(SecretNotFound) as info:
            await self.call(backend.get(RemoteRef(key=unique_name)))
        assert_no_leak(info.value)

    async def test_bad_credentials_get(
        self, backend: Backend, bad_auth_backend: Backend, write: Any, unique_name: str
    ) -> None:
        await self.put(write, unique_name, json.dumps({"s": SENTINEL}))
        with pytest.raises(BackendAuthError) as info:
            await self.call(bad_auth_backend.get(RemoteRef(key=unique_name)))
        assert_no_leak(info.value)

    async def test_bad_credentials_validate(self, bad_auth_backend: Backend) -> None:
        with pytest.raises(BackendAuthError):
            await self.call(bad_auth_backend.validate())

    async def test_unreachable_get(self, unreachable_backend: Backend, unique_name: str) -> None:
        with pytest.raises(BackendUnavailable) as info:
            await self.call(unreachable_backend.get(RemoteRef(key=unique_name)))
        assert "\n" not in str(info.value)

    async def test_unreachable_validate(self, unreachable_backend: Backend) -> None:
        with pytest.raises(BackendUnavailable):
            await self.call(unreachable_backend.validate())

    async def test_validate_ok(self, backend: Backend) -> None:
        await self.call(backend.validate())

    async def test_close_idempotent(
        self, backend_factory: Callable[[], Awaitable[Backend]]
    ) -> None:
        b = await backend_factory()
        await self.call(b.validate())
        await self.call(b.close())
        await self.call(b.close())

    async def test_errors_are_typed_and_leak_free(
        self, backend: Backend, write: Any, unique_name: str
    ) -> None:
        """Asking for a property of a non-object value, or extracting it, fails cleanly."""
        await self.put(write, unique_name, json.dumps({"list": [SENTINEL]}))
        with pytest.raises(SecretNotFound) as info:
            await self.call(backend.get(RemoteRef(key=unique_name, property="list.x")))
        assert_no_leak(info.value)
        for bad in (
            RemoteRef(key=unique_name + "-absent"),
            RemoteRef(key=unique_name, property="q"),
        ):
            try:
                await self.call(backend.get(bad))
            except BackendError as exc:
                assert isinstance(exc, SecretSyncError)
                assert_no_leak(exc)
            else:
                pytest.fail(f"expected a BackendError for {bad}")
