"""The ExternalSecret engine's part of a resync: what the Secret watch never reported (a
deletion or an edit while kopf's watch was starting over) is replayed from one listing."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from secretsync import api
from secretsync.controller.external.engine import ExternalEngine as Engine
from secretsync.kube import Kube
from secretsync.reconcile import external as rx

KEY = bytes(range(32))


def synced(name: str) -> str:
    """The hash of what was written for ``name`` (value "A")."""
    return rx.data_hash({"a": b"A"}, "Opaque", f"uid-{name}", KEY)


def es(name: str) -> dict[str, Any]:
    return {"apiVersion": api.API_VERSION, "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
            "spec": {"secretStoreRef": {"name": "v"}, "refreshInterval": "1h",
                     "target": {"name": f"s-{name}"},
                     "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]},
            "status": {"syncedDataHash": synced(name)}}


def secret(name: str, owner: str | None, rv: str = "1", value: str = "QQ==") -> dict[str, Any]:
    ann = {api.ANN_DATA_HASH: synced(owner or name), **({rx.ANN_OWNER: owner} if owner else {})}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"a": value},
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                         "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE},
                         "annotations": ann}}


def engine() -> Engine:
    eng = Engine(cast(Kube, None), hash_key=KEY)
    for name in ("db", "api", "web"):
        eng.on_external(None, es(name))
    for s in (secret("s-db", "db"), secret("s-api", "api"), secret("s-web", "web")):
        assert eng.on_secret(None, s) is False  # as written: nothing to repair
    return eng


def test_resync_replays_deletions_and_edits_the_watch_missed() -> None:
    eng = engine()
    listed = {("ns", "s-api"): secret("s-api", "api", rv="2", value="Qg=="),  # edited
              ("ns", "s-web"): secret("s-web", "web"),  # unchanged
              ("ns", "sealed"): secret("sealed", None)}  # another engine's: indexed only
    before = eng.entries[("ns", "web")].reason
    # s-db is gone from the listing: deleted while no watch saw it
    assert asyncio.run(eng.resync(listed)) == 2
    assert eng.entries[("ns", "db")].reason == "drift: target Secret deleted"
    assert eng.entries[("ns", "api")].reason == "drift: data or type edited"
    assert eng.entries[("ns", "web")].reason == before  # untouched
    assert set(eng.secrets) == set(listed)  # the index follows the listing
    assert eng.secrets[("ns", "s-api")]["metadata"]["resourceVersion"] == "2"
    assert asyncio.run(eng.resync(listed)) == 0  # replayed once, not at every resync


def test_resync_of_a_listing_that_matches_the_index_repairs_nothing() -> None:
    eng = engine()
    listed = dict(eng.secrets)
    before = {k: e.reason for k, e in eng.entries.items()}
    assert asyncio.run(eng.resync(listed)) == 0
    assert {k: e.reason for k, e in eng.entries.items()} == before
