"""The backend registry: entry points by provider key, one-provider specs, and a store naming
a backend whose extra is not installed gets a pip hint instead of an ImportError."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from secretsync.backends import registry
from secretsync.backends.base import StoreContext
from secretsync.errors import BackendNotInstalled, StoreInvalid


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_factories", {})
    yield


def test_builtin_backends_are_registered() -> None:
    assert {"vault", "aws", "gcpsm", "azurekv"} <= set(registry.available())


def test_missing_extra_names_the_pip_command(fresh_registry: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # "not installed": import raises
    pkg = "secretsync.backends.vault"
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        monkeypatch.delitem(sys.modules, name)  # the package and its submodules
    with pytest.raises(BackendNotInstalled) as info:
        registry.factory_for("vault")
    assert "pip install 'secretsync[vault]'" in str(info.value)
    assert info.value.reason == "BackendNotInstalled"


def test_unknown_provider(fresh_registry: None) -> None:
    with pytest.raises(StoreInvalid) as info:
        registry.factory_for("nosuch")
    assert "nosuch" in str(info.value) and "vault" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [({}, "missing"), ({"provider": {}}, "missing"),
     ({"provider": {"vault": {}, "aws": {}}}, "exactly one"),
     ({"provider": {"vault": "x"}}, "must be an object")],
)
def test_provider_block_shape(spec: dict[str, Any], needle: str) -> None:
    with pytest.raises(StoreInvalid) as info:
        registry.provider_of(spec, what="SecretStore/s")
    assert needle in str(info.value) and "SecretStore/s" in str(info.value)


async def test_build_passes_the_provider_block(fresh_registry: None) -> None:
    seen: dict[str, Any] = {}

    async def factory(ctx: StoreContext) -> Any:
        seen.update(ctx.provider)
        return object()

    registry.register("fake", factory)

    async def resolve(ns: str, name: str, key: str) -> bytes:
        return b""

    ctx = StoreContext(store_kind="SecretStore", store_name="s", namespace="n", provider={},
                       resolve_secret=resolve)
    name, _ = await registry.build(ctx, {"provider": {"fake": {"a": 1}}})
    assert name == "fake" and seen == {"a": 1}
