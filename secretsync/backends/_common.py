"""Small helpers the cloud backends (AWS, GCP, Azure) share.

Resolving a ``{name, key, namespace}`` Secret reference from a store's auth block, a
``serviceAccountRef``'s TokenRequest token and annotations (workload identity), reading
typed fields from the provider block with errors that name the store and the field, and
compiling ``find.name.regexp``. Pure apart from the resolver call; no SDK imports here.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secretsync.backends.base import StoreContext
from secretsync.errors import InvalidInput, StoreInvalid


def ca_bundle(value: str, field: str, what: str) -> bytes:
    """A store's ``caBundle`` (``field``: its dotted path, for messages) as PEM bytes: base64 of
    a PEM (like every Kubernetes bytes field) or the PEM text itself; it must hold a
    certificate."""
    text = value.strip()
    pem = text.encode() + b"\n"
    if not text.startswith("-----BEGIN"):
        try:
            pem = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise StoreInvalid(f"{what}: {field} is not base64 PEM") from exc
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise StoreInvalid(f"{what}: {field} holds no PEM certificate")
    return pem


def store_label(ctx: StoreContext) -> str:
    """``SecretStore ns/name`` or ``ClusterSecretStore name``, for error messages."""
    if ctx.store_kind == "ClusterSecretStore":
        return f"{ctx.store_kind} {ctx.store_name}"
    return f"{ctx.store_kind} {ctx.namespace}/{ctx.store_name}"


def opt_str(ctx: StoreContext, block: Mapping[str, Any], key: str, path: str) -> str | None:
    """An optional string field; ``path`` is the dotted field path for the message."""
    value = block.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise StoreInvalid(f"{store_label(ctx)}: {path} must be a string")
    return value


def req_str(ctx: StoreContext, block: Mapping[str, Any], key: str, path: str) -> str:
    """A required string field."""
    value = opt_str(ctx, block, key, path)
    if value is None:
        raise StoreInvalid(f"{store_label(ctx)}: {path} is required")
    return value


def opt_map(ctx: StoreContext, block: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    """An optional object field (empty mapping when absent)."""
    value = block.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StoreInvalid(f"{store_label(ctx)}: {path} must be an object")
    return value


async def resolve_ref(ctx: StoreContext, ref: Mapping[str, Any], path: str) -> bytes:
    """Resolve a ``{name, key, namespace}`` Secret reference from a store's auth block.

    A namespaced SecretStore may only reference Secrets in its own namespace; a
    ClusterSecretStore reference without a namespace falls back to ``ctx.namespace``.
    """
    if not isinstance(ref, Mapping):
        raise StoreInvalid(f"{store_label(ctx)}: {path} must be an object")
    name = req_str(ctx, ref, "name", f"{path}.name")
    key = req_str(ctx, ref, "key", f"{path}.key")
    namespace = opt_str(ctx, ref, "namespace", f"{path}.namespace") or ctx.namespace
    if ctx.store_kind != "ClusterSecretStore" and namespace != ctx.namespace:
        raise StoreInvalid(
            f"{store_label(ctx)}: {path}.namespace {namespace!r} is not allowed; a SecretStore "
            "may only reference Secrets in its own namespace"
        )
    return await ctx.resolve_secret(namespace, name, key)


@dataclass(frozen=True)
class ServiceAccountRef:
    """A ``serviceAccountRef`` block: ``{name, namespace, audiences}``."""

    name: str
    namespace: str
    audiences: tuple[str, ...] = ()


def service_account_ref(ctx: StoreContext, block: Any, path: str) -> ServiceAccountRef:
    """Parse a ``serviceAccountRef``; like Secret references, a SecretStore may only name a
    ServiceAccount of its own namespace."""
    if not block:
        raise StoreInvalid(f"{store_label(ctx)}: {path} is required")
    if not isinstance(block, Mapping):
        raise StoreInvalid(f"{store_label(ctx)}: {path} must be an object")
    name = req_str(ctx, block, "name", f"{path}.name")
    namespace = opt_str(ctx, block, "namespace", f"{path}.namespace") or ctx.namespace
    if ctx.store_kind != "ClusterSecretStore" and namespace != ctx.namespace:
        raise StoreInvalid(
            f"{store_label(ctx)}: {path}.namespace {namespace!r} is not allowed; a SecretStore "
            "may only use ServiceAccounts of its own namespace"
        )
    audiences = block.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise StoreInvalid(f"{store_label(ctx)}: {path}.audiences must be a list of strings")
    return ServiceAccountRef(name, namespace, tuple(audiences))


async def service_account_token(
    ctx: StoreContext, sa: ServiceAccountRef, audiences: list[str], path: str
) -> str:
    """A TokenRequest token of ``sa`` for ``audiences`` (never logged, never in a message)."""
    if ctx.request_token is None:
        raise StoreInvalid(f"{store_label(ctx)}: {path} needs service-account tokens")
    return await ctx.request_token(sa.namespace, sa.name, audiences)


async def service_account_annotations(
    ctx: StoreContext, sa: ServiceAccountRef, path: str
) -> Mapping[str, str]:
    """The annotations of ``sa`` (workload identity reads its cloud identity from them)."""
    if ctx.read_service_account is None:
        raise StoreInvalid(f"{store_label(ctx)}: {path} needs to read ServiceAccounts")
    return await ctx.read_service_account(sa.namespace, sa.name)


async def resolve_ref_str(ctx: StoreContext, ref: Mapping[str, Any], path: str) -> str:
    """Like :func:`resolve_ref`, decoded as UTF-8 with surrounding whitespace stripped
    (keys pasted into Secrets often end with a newline)."""
    raw = await resolve_ref(ctx, ref, path)
    try:
        return raw.decode().strip()
    except UnicodeDecodeError as exc:
        raise StoreInvalid(
            f"{store_label(ctx)}: the Secret referenced by {path} is not valid UTF-8"
        ) from exc


def compile_regexp(pattern: str | None, *, what: str) -> re.Pattern[str] | None:
    """Compile ``find.name.regexp`` (search semantics, like Go's ``MatchString``)."""
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidInput(f"{what}: find.name.regexp {pattern!r} is invalid: {exc}") from exc


def tags_match(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    """True when every wanted tag/label is present with exactly that value."""
    return all(have.get(k) == v for k, v in want.items())


def cap_loggers(caps: Mapping[str, int]) -> None:
    """Raise SDK loggers to at least the given level. Some SDKs log whole HTTP response
    bodies (secret values) at DEBUG; a controller run with ``--log-level DEBUG`` must not
    print them, whatever the root level is."""
    for name, level in caps.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < level:
            logger.setLevel(level)
