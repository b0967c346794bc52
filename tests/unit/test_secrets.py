"""Pure Secret helpers shared by both reconcilers: ownership, minimal patches, no-churn status."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from secretsync import api
from secretsync.reconcile.sealed import status_update
from secretsync.reconcile.secrets import (
    build_secret,
    ownership,
    plan_secret,
)
from secretsync.reconcile.status import status_patch

OWNER = {
    "apiVersion": "secretsync.io/v1alpha1",
    "kind": "SealedSecret",
    "metadata": {"name": "db", "namespace": "app", "uid": "uid-1"},
}


def desired(**kw: object) -> dict:
    args: dict = {"name": "db", "namespace": "app", "data": {"password": b"s3cret"},
                  "owner": OWNER}
    args.update(kw)
    return build_secret(**args)


def test_build_secret_sets_owner_label_and_encodes() -> None:
    s = desired(labels={"team": "a"}, type_="kubernetes.io/basic-auth", immutable=True)
    assert s["data"] == {"password": base64.b64encode(b"s3cret").decode()}
    assert s["metadata"]["labels"] == {"team": "a", api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE}
    ref = s["metadata"]["ownerReferences"][0]
    assert ref == {"apiVersion": "secretsync.io/v1alpha1", "kind": "SealedSecret",
                   "name": "db", "uid": "uid-1", "controller": True}
    assert s["type"] == "kubernetes.io/basic-auth"
    assert s["immutable"] is True


def test_user_label_cannot_drop_managed_by() -> None:
    s = desired(labels={api.LABEL_MANAGED_BY: "helm"})
    assert s["metadata"]["labels"][api.LABEL_MANAGED_BY] == api.MANAGED_BY_VALUE


def test_ownership() -> None:
    ours = desired()
    assert ownership(ours, OWNER) == "owned"
    earlier = desired()
    earlier["metadata"]["ownerReferences"][0]["uid"] = "old-uid"
    assert ownership(earlier, OWNER) == "owned"  # re-applied owner, GC not yet run
    other = desired()
    other["metadata"]["ownerReferences"][0].update(kind="ExternalSecret", uid="u2",
                                                   apiVersion="secretsync.io/v1alpha1")
    assert ownership(other, OWNER) == "foreign"
    plain = {"metadata": {"name": "db", "namespace": "app"}}
    assert ownership(plain, OWNER) == "foreign"
    handed = {"metadata": {"name": "db", "annotations": {api.ANN_MANAGED: "true"}}}
    assert ownership(handed, OWNER) == "handover"
    no = {"metadata": {"name": "db", "annotations": {api.ANN_MANAGED: "false"}}}
    assert ownership(no, OWNER) == "foreign"


def test_plan_none_when_equal_even_with_server_fields() -> None:
    want = desired()
    have = desired()
    have["metadata"].update(uid="x", resourceVersion="5", creationTimestamp="t",
                            annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"})
    assert plan_secret(have, want).action == "none"


def test_plan_create_and_patch_data() -> None:
    want = desired()
    assert plan_secret(None, want).action == "create"
    have = desired(data={"password": b"edited", "extra": b"x"})
    plan = plan_secret(have, want)
    assert plan.action == "patch"
    assert plan.patch == {"data": {"password": want["data"]["password"], "extra": None}}
    assert plan.changed == ("data",)


def test_plan_restores_labels_annotations_and_owner() -> None:
    want = desired(labels={"team": "a"}, annotations={"note": "n"})
    have = desired(labels={"team": "b", "added": "x"}, annotations={})
    have["metadata"].pop("ownerReferences")
    plan = plan_secret(have, want)
    assert plan.action == "patch"
    meta = plan.patch["metadata"]
    assert meta["labels"] == {"team": "a", "added": None}
    assert meta["annotations"] == {"note": "n"}
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert "data" not in plan.patch


def test_plan_recreate_on_type_or_immutable() -> None:
    want = desired(type_="kubernetes.io/tls")
    assert plan_secret(desired(), want).action == "recreate"
    frozen = desired(immutable=True, data={"password": b"old"})
    assert plan_secret(frozen, desired(immutable=True)).action == "recreate"
    assert plan_secret(desired(immutable=True), desired(immutable=True)).action == "none"


def test_plan_never_puts_values_in_changed() -> None:
    plan = plan_secret(desired(data={"password": b"other"}), desired())
    assert all("s3cret" not in c and "other" not in c for c in plan.changed)


def test_status_patch_no_churn_and_transition_time() -> None:
    def obj(generation: int, status: dict[str, object] | None) -> dict[str, object]:
        return {**OWNER, "metadata": {**OWNER["metadata"], "generation": generation},
                "status": status}

    def applied(status: dict[str, object] | None, patch: dict[str, object]) -> dict[str, object]:
        return {**(status or {}), **patch}

    t0, later = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"
    first = status_update(obj(1, None), True, "Unsealed", "ok", now=t0)
    assert first is not None
    assert first["observedGeneration"] == 1
    c = first["conditions"][0]
    assert (c["type"], c["status"], c["reason"]) == ("Synced", "True", "Unsealed")
    assert c["lastTransitionTime"] == t0 and c["observedGeneration"] == 1
    assert status_update(obj(1, first), True, "Unsealed", "ok", now=later) is None
    # new generation, same condition: write, keep the transition time
    second = status_update(obj(2, first), True, "Unsealed", "ok", now=later)
    assert second is not None
    assert second["conditions"][0]["lastTransitionTime"] == t0
    # flip to False: new transition time; a second line of the message never reaches status
    status = applied(first, second)
    bad = status_update(obj(2, status), False, "X", "m\nmore", now=later)
    assert bad is not None and list(bad) == ["conditions"]
    assert bad["conditions"][0]["lastTransitionTime"] == later
    assert bad["conditions"][0]["message"] == "m"


def test_status_patch_keeps_other_conditions_and_unknown_keys() -> None:
    prev = {"conditions": [{"type": "Other", "status": "True"}], "peerField": 1}
    patch = status_update({**OWNER, "status": prev}, True, "Unsealed", "ok", now="T")
    assert patch is not None and "peerField" not in patch
    assert [c["type"] for c in patch["conditions"]] == ["Other", "Synced"]
    assert status_patch(prev, {"conditions": prev["conditions"]}) is None


# --- property: applying the planned patch converges (and then nothing is planned) -----------

_keys = st.sampled_from(["a", "b", "c", "team", "kubectl.kubernetes.io/x", api.ANN_MANAGED])
_maps = st.dictionaries(_keys, st.sampled_from(["1", "2", "true"]), max_size=4)
_data = st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), st.binary(max_size=8), max_size=3)


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 merge patch."""
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


@settings(max_examples=200, deadline=None)
@given(_maps, _maps, _maps, _maps, _data, _data, st.booleans())
def test_patch_converges(
    have_labels: dict, want_labels: dict, have_ann: dict, want_ann: dict,
    have_data: dict, want_data: dict, owned: bool,
) -> None:
    want = desired(labels=want_labels, annotations=want_ann, data=want_data)
    have = desired(labels=have_labels, annotations=have_ann, data=have_data)
    if not owned:
        have["metadata"].pop("ownerReferences")
    plan = plan_secret(have, want)
    assert plan.action in ("none", "patch")
    if plan.action == "patch":
        have = _merge(have, plan.patch or {})
    assert plan_secret(have, want).action == "none"
    assert have["data"] == want["data"]
    assert have["metadata"]["labels"][api.LABEL_MANAGED_BY] == api.MANAGED_BY_VALUE
    assert have["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
