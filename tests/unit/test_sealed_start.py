"""The initial sync's pure decision: which Secrets changed while no watch was running."""

from __future__ import annotations

from typing import Any

from secretsync.controller.sealed_start import to_restore

SS = "secretsync.io/v1alpha1"


def sealed(name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": SS, "kind": "SealedSecret",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "1"}}


def secret(name: str, data: dict[str, str], **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "ns", "labels": dict(labels)},
            "data": dict(data)}


LISTED = [sealed("kept", "u1"), sealed("deleted", "u2"), sealed("edited", "u3"),
          sealed("failed", "u4"), sealed("undecryptable", "u5"), sealed("relabelled", "u6")]
DESIRED = {"u1": secret("kept", {"a": "QQ=="}, app="x"),
           "u2": secret("deleted", {"a": "QQ=="}),
           "u3": secret("edited", {"a": "QQ=="}),
           "u4": secret("failed", {"a": "QQ=="}),
           "u6": secret("relabelled", {"a": "QQ=="}, app="x")}  # u5: never decrypted
INDEX = {("ns", "kept"): secret("kept", {"a": "QQ=="}, app="x"),
         ("ns", "edited"): secret("edited", {"a": "Qg=="}),  # data changed by hand
         ("ns", "relabelled"): secret("relabelled", {"a": "QQ=="}, app="y")}


def test_restores_deleted_and_edited_secrets_only() -> None:
    refs = to_restore(LISTED, DESIRED, INDEX, unsettled={(SS, "ns", "failed")})
    assert refs == [(SS, "ns", "deleted"), (SS, "ns", "edited"), (SS, "ns", "relabelled")]


def test_nothing_to_restore_when_all_secrets_are_as_desired() -> None:
    index = {("ns", s["metadata"]["name"]): s for s in DESIRED.values()}
    assert to_restore(LISTED, DESIRED, index, unsettled={(SS, "ns", "failed")}) == []


def test_failed_or_retrying_objects_keep_their_own_retry() -> None:
    # "failed" has no Secret: without the unsettled mark it would be reconciled again here
    # (and could post its warning Event twice)
    assert (SS, "ns", "failed") in to_restore(LISTED, DESIRED, INDEX, unsettled=set())
    assert (SS, "ns", "failed") not in to_restore(LISTED, DESIRED, INDEX,
                                                  unsettled={(SS, "ns", "failed")})
