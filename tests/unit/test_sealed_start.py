"""The pure decision of the initial sync and of every resync: which managed Secrets are gone or
changed although no watch event said so."""

from __future__ import annotations

from typing import Any

from secretsync.controller.sealed_start import to_restore

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
