"""The pure decision of the initial sync and of every resync: which managed Secrets are gone or
changed although no watch event said so."""

from __future__ import annotations

import asyncio
from typing import Any

from secretsync.controller.sealed import start as sealed_start
from secretsync.controller.sealed.start import to_restore
from secretsync.controller.sealed.writes import Ref

SS = "secretsync.io/v1alpha1"


def secret(name: str, data: dict[str, str], uid: str = "", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "labels": dict(labels)}
    if uid:  # a desired Secret: owned by its SealedSecret of the same name
        meta["ownerReferences"] = [{"apiVersion": SS, "kind": "SealedSecret", "name": name,
                                    "uid": uid, "controller": True}]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
            "data": dict(data)}


DESIRED = {"u1": secret("kept", {"a": "QQ=="}, "u1", app="x"),
           "u2": secret("deleted", {"a": "QQ=="}, "u2"),
           "u3": secret("edited", {"a": "QQ=="}, "u3"),
           "u4": secret("failed", {"a": "QQ=="}, "u4"),
           "u6": secret("relabelled", {"a": "QQ=="}, "u6", app="x")}  # u5: never decrypted
LISTED = {("ns", "kept"): secret("kept", {"a": "QQ=="}, "u1", app="x"),
          ("ns", "edited"): secret("edited", {"a": "Qg=="}, "u3"),  # data changed by hand
          ("ns", "relabelled"): secret("relabelled", {"a": "QQ=="}, "u6", app="y")}


def test_restores_deleted_and_edited_secrets_only() -> None:
    refs = to_restore(DESIRED, LISTED, unsettled={(SS, "ns", "failed")})
    assert refs == [(SS, "ns", "deleted"), (SS, "ns", "edited"), (SS, "ns", "relabelled")]


def test_nothing_to_restore_when_all_secrets_are_as_desired() -> None:
    listed = {("ns", s["metadata"]["name"]): s for s in DESIRED.values()}
    assert to_restore(DESIRED, listed, unsettled={(SS, "ns", "failed")}) == []


def test_failed_or_retrying_objects_keep_their_own_retry() -> None:
    # "failed" has no Secret: without the unsettled mark it would be reconciled again here
    # (and could post its warning Event twice)
    assert (SS, "ns", "failed") in to_restore(DESIRED, LISTED, unsettled=set())
    assert (SS, "ns", "failed") not in to_restore(DESIRED, LISTED,
                                                  unsettled={(SS, "ns", "failed")})


def test_a_desired_secret_without_its_owner_reference_is_skipped() -> None:
    orphan = secret("orphan", {"a": "QQ=="})  # no controller ownerReference: not ours
    assert to_restore({"u9": orphan}, {}, unsettled=set()) == []


class FakeEngine:
    """What ``start.restore`` uses of the engine: its desired Secrets, its unsettled objects,
    its index and ``reconcile_ref``."""

    def __init__(self) -> None:
        self.index = {("ns", n): secret(n, {"a": "QQ=="}) for n in ("deleted", "kept")}
        self.started: list[Ref] = []
        self.everyone = asyncio.Event()

    def desired_by_uid(self) -> dict[str, Any]:
        return DESIRED

    def unsettled(self) -> set[Ref]:
        return {(SS, "ns", "failed")}

    async def reconcile_ref(self, ref: Ref, *, restored: bool = False) -> None:
        assert restored
        assert (ref[1], ref[2]) not in self.index  # index entry dropped first: read for real
        self.started.append(ref)
        if len(self.started) == 3:
            self.everyone.set()
        await self.everyone.wait()


def test_a_resync_restores_its_secrets_concurrently() -> None:
    # after a mass deletion during an outage, one restore after the other cost a GET and a
    # create round trip per Secret in a row: each restore here waits until all have started
    engine = FakeEngine()

    async def run() -> int:
        return await asyncio.wait_for(sealed_start.restore(engine, LISTED), 5)  # type: ignore[arg-type]

    assert asyncio.run(run()) == 3
    expected = [(SS, "ns", "deleted"), (SS, "ns", "edited"), (SS, "ns", "relabelled")]
    assert sorted(engine.started) == sorted(expected)
    assert ("ns", "kept") in engine.index
