"""Helpers shared by the cloud backends: store labels, secret references, regexps, tags, and
the backend-call metrics' outcome vocabulary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from secretsync.backends._common import (
    compile_regexp,
    resolve_ref,
    resolve_ref_str,
    store_label,
    tags_match,
)
from secretsync.backends.base import StoreContext
from secretsync.backends.metrics import outcome_of, track
from secretsync.errors import (
    BackendAuthError,
    BackendError,
    BackendUnavailable,
    InvalidInput,
    SecretNotFound,
    StoreInvalid,
)


def ctx(kind: str = "SecretStore", value: bytes = b"  v\n") -> StoreContext:
    async def resolve(namespace: str, name: str, key: str) -> bytes:
        return value

    return StoreContext(kind, "st", "ns1", {}, resolve)


def test_store_label() -> None:
    assert store_label(ctx()) == "SecretStore ns1/st"
    assert store_label(ctx("ClusterSecretStore")) == "ClusterSecretStore st"


async def test_resolve_ref_rules() -> None:
    assert await resolve_ref(ctx(), {"name": "n", "key": "k"}, "auth.x") == b"  v\n"
    assert await resolve_ref_str(ctx(), {"name": "n", "key": "k"}, "auth.x") == "v"
    assert await resolve_ref(ctx(), {"name": "n", "key": "k", "namespace": "ns1"}, "a") == b"  v\n"
    with pytest.raises(StoreInvalid, match=r"SecretStore ns1/st: auth\.x\.key is required"):
        await resolve_ref(ctx(), {"name": "n"}, "auth.x")
    with pytest.raises(StoreInvalid, match="own namespace"):
        await resolve_ref(ctx(), {"name": "n", "key": "k", "namespace": "ns2"}, "auth.x")
    cluster = ctx("ClusterSecretStore")
    assert await resolve_ref(cluster, {"name": "n", "key": "k", "namespace": "ns2"}, "a") == (
        b"  v\n"
    )
    with pytest.raises(StoreInvalid, match="not valid UTF-8"):
        await resolve_ref_str(ctx(value=b"\xff\xfe"), {"name": "n", "key": "k"}, "auth.x")
    with pytest.raises(StoreInvalid, match="must be an object"):
        await resolve_ref(ctx(), "just-a-string", "auth.x")  # type: ignore[arg-type]


def test_compile_regexp() -> None:
    assert compile_regexp(None, what="w") is None
    assert compile_regexp("", what="w") is None
    pat = compile_regexp("db$", what="w")
    assert pat is not None and pat.search("app/db") and not pat.search("db/app")
    with pytest.raises(InvalidInput, match=r"find\.name\.regexp '\(' is invalid"):
        compile_regexp("(", what="w")


def test_tags_match() -> None:
    assert tags_match({"a": "1", "b": "2"}, {"a": "1"})
    assert tags_match({"a": "1"}, {})
    assert not tags_match({"a": "2"}, {"a": "1"})
    assert not tags_match({}, {"a": "1"})


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "ok"),
        (SecretNotFound("x"), "not_found"),
        (BackendAuthError("x"), "auth_error"),
        (BackendUnavailable("x"), "unavailable"),
        (BackendError("x"), "error"),
        (ValueError("x"), "error"),
        (asyncio.CancelledError(), "cancelled"),
    ],
)
def test_outcome_of(exc: BaseException | None, outcome: str) -> None:
    assert outcome_of(exc) == outcome


def test_track_counts_translated_errors() -> None:
    def value(outcome: str) -> float:
        labels: dict[str, Any] = {"backend": "unit", "operation": "get", "outcome": outcome}
        return REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) or 0.0

    with track("unit", "get"):
        pass
    with pytest.raises(SecretNotFound), track("unit", "get"):
        raise SecretNotFound("gone")
    assert value("ok") == 1.0
    assert value("not_found") == 1.0
    count = REGISTRY.get_sample_value(
        "secretsync_backend_call_duration_seconds_count", {"backend": "unit", "operation": "get"}
    )
    assert count == 2.0


def test_sdk_loggers_never_print_bodies_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)  # what --log-level DEBUG does to the root logger

    import secretsync.backends.aws
    import secretsync.backends.azure
    import secretsync.backends.gcp  # noqa: F401

    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.INFO
    assert logging.getLogger("botocore.parsers").getEffectiveLevel() >= logging.INFO
    assert logging.getLogger("azure.identity").getEffectiveLevel() >= logging.ERROR
    assert logging.getLogger("azure.core.pipeline").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("google.cloud.secretmanager_v1").getEffectiveLevel() >= logging.INFO
