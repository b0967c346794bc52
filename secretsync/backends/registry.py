"""Find backends by entry point and build one from a store spec.

Backends are plugins: each is an entry point in group ``secretsync.backends`` whose name is
the provider key of a store spec (``spec.provider.vault`` -> entry point ``vault``) and whose
value is an async ``create(ctx: StoreContext) -> Backend``. Built-in backends live behind
optional extras; a store naming one whose extra is not installed gets a one-line error saying
which ``pip install`` fixes it, instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any, cast

from secretsync.backends.base import Backend, BackendFactory, StoreContext
from secretsync.errors import BackendNotInstalled, StoreInvalid

GROUP = "secretsync.backends"

# provider key -> the pip extra that installs its SDK (built-in backends only).
EXTRAS: dict[str, str] = {"vault": "vault", "aws": "aws", "gcpsm": "gcp", "azurekv": "azure"}

_factories: dict[str, BackendFactory] = {}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def available() -> list[str]:
    """Provider keys with a registered entry point (installed or not)."""
    return sorted(_entry_points())


def register(name: str, factory: BackendFactory) -> None:
    """Register a factory in-process (tests, embedding); wins over an entry point."""
    _factories[name] = factory


def _install_hint(name: str) -> str:
    extra = EXTRAS.get(name)
    return (
        f"pip install 'secretsync[{extra}]'" if extra else f"install the plugin providing {name!r}"
    )


def factory_for(name: str) -> BackendFactory:
    """The factory for provider key ``name``.

    Raises ``BackendNotInstalled`` when the backend's SDK (its extra) is missing, and
    ``StoreInvalid`` for a provider key nobody registered.
    """
    if name in _factories:
        return _factories[name]
    ep = _entry_points().get(name)
    if ep is None:
        known = ", ".join(sorted(set(available()) | set(_factories))) or "none"
        raise StoreInvalid(f"unknown provider {name!r} (known: {known})")
    try:
        factory = cast(BackendFactory, ep.load())
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "a dependency"
        raise BackendNotInstalled(
            f"backend {name!r} is not installed ({missing} is missing): {_install_hint(name)}"
        ) from exc
    _factories[name] = factory
    return factory


def provider_of(spec: Mapping[str, Any], *, what: str) -> tuple[str, Mapping[str, Any]]:
    """Split ``spec.provider`` into (provider key, provider block); exactly one key allowed."""
    provider = spec.get("provider")
    if not isinstance(provider, Mapping) or not provider:
        raise StoreInvalid(f"{what}: spec.provider is missing or empty")
    keys = [k for k, v in provider.items() if v is not None]
    if len(keys) != 1:
        raise StoreInvalid(f"{what}: spec.provider must name exactly one backend, got {keys}")
    block = provider[keys[0]]
    if not isinstance(block, Mapping):
        raise StoreInvalid(f"{what}: spec.provider.{keys[0]} must be an object")
    return keys[0], block


async def build(ctx_without_provider: StoreContext, spec: Mapping[str, Any]) -> tuple[str, Backend]:
    """Build the backend a store spec names. ``ctx_without_provider.provider`` is replaced by
    the provider block. Returns (provider key, backend)."""
    what = f"{ctx_without_provider.store_kind}/{ctx_without_provider.store_name}"
    name, block = provider_of(spec, what=what)
    factory = factory_for(name)
    ctx = StoreContext(
        store_kind=ctx_without_provider.store_kind,
        store_name=ctx_without_provider.store_name,
        namespace=ctx_without_provider.namespace,
        provider=block,
        resolve_secret=ctx_without_provider.resolve_secret,
        request_token=ctx_without_provider.request_token,
        read_service_account=ctx_without_provider.read_service_account,
    )
    return name, await factory(ctx)
