"""Refresh timing (aligned phases, backoff), refresh decisions, namespace conditions and the
single-flight — pure or in-memory, no cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from secretsync.controller.external.flight import SingleFlight
from secretsync.errors import BackendUnavailable
from secretsync.reconcile import external_schedule as s
from secretsync.reconcile.external_spec import parse_spec


def test_phase_shared_by_same_keys_and_spread_otherwise() -> None:
    a = s.phase("SecretStore/ns/v", ["'db'", "'api'"], 3600)
    assert a == s.phase("SecretStore/ns/v", ["'api'", "'db'"], 3600)
    phases = {s.phase("SecretStore/ns/v", [f"'k{i}'"], 3600) for i in range(100)}
    assert len(phases) == 100 and all(0 <= p < 3600 for p in phases)
    # spread: no tenth of the interval holds more than a third of them
    buckets = [sum(1 for p in phases if i * 360 <= p < (i + 1) * 360) for i in range(10)]
    assert max(buckets) < 34
    assert s.phase("x", ["k"], 0) == 0.0


def test_next_slot_is_aligned_and_in_the_future() -> None:
    for now in (0.0, 99.9, 100.0, 1234.5):
        t = s.next_slot(now, 60, 7.5)
        assert now < t <= now + 60 and (t - 7.5) % 60 == pytest.approx(0)


def test_next_slot_min_gap_skips_a_slot_that_is_too_close() -> None:
    assert s.next_slot(100.0, 60, 7.5) == 127.5
    assert s.next_slot(100.0, 60, 7.5, min_gap=30) == 187.5
    assert s.next_slot(100.0, 60, 50.0, min_gap=30) == 170.0


def test_backoff_grows_caps_and_jitters() -> None:
    assert s.backoff(0, 0.3) == 0
    assert s.backoff(1, 0.0) == 2.5 and s.backoff(1, 0.999) < 5.0
    assert s.backoff(3, 0.0) == 10.0
    assert s.backoff(40, 0.999) <= 300.0 and s.backoff(40, 0.0) == 150.0


def es(spec: dict[str, Any], generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "a",
            "namespace": "n",
            "generation": generation,
            "annotations": status.pop("annotations", {}),
        },
        "spec": {
            "secretStoreRef": {"name": "v"},
            "data": [{"secretKey": "k", "remoteRef": {"key": "k"}}],
            **spec,
        },
        "status": status,
    }


READY = {
    "observedGeneration": 1,
    "syncedDataHash": "h",
    "conditions": [{"type": "Ready", "status": "True"}],
}


@pytest.mark.parametrize(
    ("spec", "status", "kw", "want"),
    [
        ({}, {}, {"due": False}, "new"),
        ({}, READY, {"due": False}, None),
        ({}, READY, {"due": True}, "periodic"),
        ({"refreshInterval": "0"}, READY, {"due": True}, None),
        ({"refreshPolicy": "OnChange"}, READY, {"due": True}, None),
        ({"refreshPolicy": "CreatedOnce"}, READY, {"due": True}, None),
        (
            {"refreshPolicy": "CreatedOnce"},
            READY,
            {"due": False, "secret_exists": False},
            "target missing",
        ),
        ({}, {**READY, "observedGeneration": 2}, {"due": False}, "spec changed"),
        (
            {},
            {**READY, "conditions": [{"type": "Ready", "status": "False"}]},
            {"due": True},
            "retry",
        ),
        (
            {},
            {**READY, "annotations": {"secretsync.io/force-sync": "2"}},
            {"due": False, "last_force": "1"},
            "force-sync",
        ),
        (
            {},
            {**READY, "annotations": {"secretsync.io/force-sync": "1"}},
            {"due": False, "last_force": "1"},
            None,
        ),
    ],
)
def test_refresh_reason(
    spec: dict[str, Any], status: dict[str, Any], kw: dict[str, Any], want: str | None
) -> None:
    obj = es(spec, **status)
    kw.setdefault("secret_exists", True)
    kw.setdefault("last_force", None)
    assert s.refresh_reason(parse_spec(obj), obj, **kw) == want


def test_namespace_conditions() -> None:
    assert s.namespace_allowed(None, "any", None)
    conds = [
        {"namespaces": ["team-a"]},
        {"namespaceRegexes": ["^prod-.*$"]},
        {
            "namespaceSelector": {
                "matchLabels": {"tier": "gold"},
                "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}],
            }
        },
    ]
    assert s.namespace_allowed(conds, "team-a", {})
    assert s.namespace_allowed(conds, "prod-eu", {})
    # unanchored, as ESO's regexp.MatchString: a prefix pattern allows, an unmatched one not
    assert s.namespace_allowed([{"namespaceRegexes": ["^payments-"]}], "payments-dev", {})
    assert s.namespace_allowed([{"namespaceRegexes": ["dev"]}], "payments-dev", {})
    assert not s.namespace_allowed([{"namespaceRegexes": ["^dev"]}], "payments-dev", {})
    assert not s.namespace_allowed([{"namespaceRegexes": ["(unclosed"]}], "payments-dev", {})
    assert not s.namespace_allowed(conds, "team-b", {})
    assert s.namespace_allowed(conds, "team-b", {"tier": "gold"})
    assert not s.namespace_allowed(conds, "team-b", {"tier": "gold", "env": "dev"})
    assert not s.namespace_allowed([{"namespaceSelector": {}}], "x", {}), "empty selector"
    assert s.needs_namespace_labels(conds) and not s.needs_namespace_labels(conds[:2])


async def test_single_flight_shares_concurrent_and_recent_calls() -> None:
    flight = SingleFlight(window=5)
    calls = 0

    async def fetch() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"v"

    got = await asyncio.gather(*(flight.do(("store", "k"), fetch) for _ in range(50)))
    assert got == [b"v"] * 50 and calls == 1
    assert await flight.do(("store", "k"), fetch) == b"v" and calls == 1, "recent: reused"
    assert await flight.do(("store", "k"), fetch, max_age=0) == b"v" and calls == 2
    await flight.do(("store", "other"), fetch)
    assert calls == 3 and flight.calls == 3 and flight.shared == 50


async def test_single_flight_shares_errors_then_forgets() -> None:
    flight = SingleFlight(window=5)
    calls = 0

    async def down() -> bytes:
        nonlocal calls
        calls += 1
        raise BackendUnavailable("down")

    for _ in range(3):
        with pytest.raises(BackendUnavailable):
            await flight.do(("s", "k"), down)
    assert calls == 1
    flight.forget("s")
    with pytest.raises(BackendUnavailable):
        await flight.do(("s", "k"), down)
    assert calls == 2
