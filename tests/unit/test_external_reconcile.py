"""Pure ExternalSecret reconcile: assembling fetched values, the desired Secret, the write plan
(no churn), drift detection and status."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from secretsync import api
from secretsync.errors import BackendUnavailable, InvalidInput, InvalidTemplate, SecretNotFound
from secretsync.reconcile import external as rx
from secretsync.reconcile import external_data as xd
from secretsync.reconcile.external_spec import parse_spec
from secretsync.reconcile.external_status import build_status
from secretsync.reconcile.external_status import ready_changed as condition_changed
from secretsync.reconcile.status import status_patch

UID = "1234-uid"
KEY = bytes(range(32))  # the controller's data-hash key (a fixed one: tests are repeatable)


def es(spec: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": {"secretStoreRef": {"name": "v"}, **spec},
        "status": status,
    }


def b64(v: bytes) -> str:
    return base64.b64encode(v).decode()


def test_fetch_plan_dedupes_and_orders() -> None:
    spec = parse_spec(
        es(
            {
                "data": [
                    {"secretKey": "a", "remoteRef": {"key": "db", "property": "u"}},
                    {"secretKey": "b", "remoteRef": {"key": "db", "property": "u"}},
                    {"secretKey": "c", "remoteRef": {"key": "db", "property": "p"}},
                ],
                "dataFrom": [{"extract": {"key": "cfg"}}, {"find": {"path": "x"}}],
            }
        )
    )
    plan = xd.fetch_plan(spec)
    # one value fetch for all three properties of 'db': properties are selected locally
    assert [f.op for f in plan] == ["get_map", "find", "get"]
    assert plan[2] == xd.Fetch("get", "db")


def test_assemble_data_wins_over_datafrom_and_decodes() -> None:
    spec = parse_spec(
        es(
            {
                "data": [
                    {"secretKey": "a", "remoteRef": {"key": "k1", "decodingStrategy": "Base64"}},
                    {
                        "secretKey": "url",
                        "remoteRef": {"key": "k2", "decodingStrategy": "Base64URL"},
                    },
                    {"secretKey": "auto", "remoteRef": {"key": "k3", "decodingStrategy": "Auto"}},
                    {"secretKey": "plain", "remoteRef": {"key": "k4", "decodingStrategy": "Auto"}},
                ],
                "dataFrom": [
                    {"extract": {"key": "m"}},
                    {
                        "find": {"path": "team"},
                        # ESO's order: the rewrite sees the name as found, '/' included
                        "rewrite": [{"regexp": {"source": "^team/", "target": "t-"}}],
                    },
                ],
            }
        )
    )
    results: dict[xd.Fetch, xd.FetchResult] = {
        xd.Fetch("get_map", "m"): {"a": b"from-map", "x": b"1"},
        xd.Fetch("find", path="team"): {"team/db": b"d"},
        xd.Fetch("get", "k1"): base64.b64encode(b"\x00\xffbin"),
        xd.Fetch("get", "k2"): base64.urlsafe_b64encode(b"\xfb\xff").rstrip(b"="),
        xd.Fetch("get", "k3"): base64.b64encode(b"auto!"),
        xd.Fetch("get", "k4"): b"not base64 !",
    }
    out = xd.assemble(spec, results)
    assert out.data == {
        "a": b"\x00\xffbin",
        "x": b"1",
        "t-db": b"d",
        "url": b"\xfb\xff",
        "auto": b"auto!",
        "plain": b"not base64 !",
    }
    assert out.missing == ()


def test_assemble_bad_base64_names_key_not_value() -> None:
    spec = parse_spec(
        es({"data": [{"secretKey": "a", "remoteRef": {"key": "k", "decodingStrategy": "Base64"}}]})
    )
    with pytest.raises(InvalidInput) as info:
        xd.assemble(spec, {xd.Fetch("get", "k"): b"s3cr3t-not-b64!"})
    assert "spec.data[0]" in str(info.value) and "s3cr3t" not in str(info.value)


def test_assemble_raises_first_error_under_retain() -> None:
    spec = parse_spec(
        es(
            {
                "data": [
                    {"secretKey": "a", "remoteRef": {"key": "k"}},
                    {"secretKey": "b", "remoteRef": {"key": "j"}},
                ]
            }
        )
    )
    with pytest.raises(BackendUnavailable):
        xd.assemble(
            spec, {xd.Fetch("get", "k"): b"1", xd.Fetch("get", "j"): BackendUnavailable("down")}
        )
    with pytest.raises(SecretNotFound):
        xd.assemble(spec, {xd.Fetch("get", "k"): b"1", xd.Fetch("get", "j"): SecretNotFound("x")})


@pytest.mark.parametrize("policy", ["Delete", "Merge"])
def test_assemble_skips_missing_under_delete_and_merge(policy: str) -> None:
    spec = parse_spec(
        es(
            {
                "target": {"deletionPolicy": policy},
                "data": [
                    {"secretKey": "a", "remoteRef": {"key": "k"}},
                    {"secretKey": "b", "remoteRef": {"key": "j"}},
                ],
            }
        )
    )
    out = xd.assemble(spec, {xd.Fetch("get", "k"): b"1", xd.Fetch("get", "j"): SecretNotFound("x")})
    assert out.data == {"a": b"1"} and len(out.missing) == 1


def test_invalid_rewritten_key_is_rejected() -> None:
    spec = parse_spec(
        es(
            {
                "dataFrom": [
                    {
                        "extract": {"key": "m"},
                        "rewrite": [{"regexp": {"source": "a", "target": "a b"}}],
                    }
                ]
            }
        )
    )
    with pytest.raises(InvalidInput) as info:
        xd.assemble(spec, {xd.Fetch("get_map", "m"): {"a": b"1"}})
    assert "not a valid Secret key" in str(info.value)


def test_template_replace_and_merge() -> None:
    base = {"data": [{"secretKey": "pw", "remoteRef": {"key": "k"}}]}
    spec = parse_spec(
        es(
            {
                **base,
                "target": {
                    "template": {
                        "data": {"dsn": "postgres://u:{{ pw }}@db", "b": "{{ pw | b64enc }}"}
                    }
                },
            }
        )
    )
    assert xd.render(spec, {"pw": b"x"}) == {"dsn": b"postgres://u:x@db", "b": b"eA=="}
    spec = parse_spec(
        es({**base, "target": {"template": {"mergePolicy": "Merge", "data": {"dsn": "{{ pw }}!"}}}})
    )
    assert xd.render(spec, {"pw": b"x"}) == {"pw": b"x", "dsn": b"x!"}
    spec = parse_spec(es({**base, "target": {"template": {"data": {"d": "{{ nope }}"}}}}))
    with pytest.raises(InvalidTemplate):
        xd.render(spec, {"pw": b"x"})


def test_engine_version_v2_renders_go_templates_on_bytes() -> None:
    base = {"data": [{"secretKey": "pw", "remoteRef": {"key": "k"}}]}
    tpl = {"engineVersion": "v2",
           "data": {"dsn": "postgres://u:{{ .pw }}@db", "raw": "{{ .pw | b64enc | b64dec }}",
                    "up": "{{- .pw | upper -}}"}}
    spec = parse_spec(es({**base, "target": {"template": tpl}}))
    assert spec.template is not None and spec.template.engine == "go"
    binary = b"\xff\x00x"
    out = xd.render(spec, {"pw": binary})
    assert out["raw"] == binary, "bytes survive a Go pipeline (no text round trip)"
    assert out["dsn"] == b"postgres://u:" + binary + b"@db"
    # Jinja2 stays the engine when engineVersion is unset; ESO's deprecated v1 is refused
    jinja = parse_spec(es({**base, "target": {"template": {"data": {"d": "{{ pw }}"}}}}))
    assert jinja.template is not None and jinja.template.engine == "jinja2"
    with pytest.raises(InvalidInput, match="engineVersion"):
        parse_spec(es({**base, "target": {"template": {"engineVersion": "v1", "data": {}}}}))
    bad = parse_spec(es({**base, "target": {"template": {"engineVersion": "v2",
                                                         "data": {"d": "{{ .pw | nope }}"}}}}))
    with pytest.raises(InvalidTemplate, match="'d'"):
        xd.render(bad, {"pw": b"x"})


def desired_for(spec_d: dict[str, Any], data: dict[str, bytes]) -> tuple[Any, dict[str, Any]]:
    obj = es(spec_d)
    spec = parse_spec(obj)
    return spec, rx.desired_secret(obj, spec, data, hash_key=KEY)


DATA = {"data": [{"secretKey": "pw", "remoteRef": {"key": "k"}}]}


def test_desired_secret_owner() -> None:
    _spec, d = desired_for(
        {
            **DATA,
            "target": {
                "template": {
                    "type": "kubernetes.io/basic-auth",
                    "metadata": {"labels": {"team": "a"}, "annotations": {"x": "y"}},
                }
            },
        },
        {"pw": b"1"},
    )
    meta = d["metadata"]
    assert meta["labels"] == {"team": "a", api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE}
    assert meta["annotations"][rx.ANN_OWNER] == "app" and meta["annotations"]["x"] == "y"
    assert meta["annotations"][api.ANN_DATA_HASH] == rx.data_hash(
        {"pw": b"1"}, "kubernetes.io/basic-auth", UID, KEY
    )
    assert meta["ownerReferences"][0]["uid"] == UID and d["type"] == "kubernetes.io/basic-auth"
    assert d["data"] == {"pw": b64(b"1")}


def test_hash_depends_on_data_type_and_uid() -> None:
    h = rx.data_hash({"a": b"1"}, "Opaque", "u", KEY)
    assert h != rx.data_hash({"a": b"2"}, "Opaque", "u", KEY)
    assert h != rx.data_hash({"a": b"1"}, "kubernetes.io/tls", "u", KEY)
    assert h != rx.data_hash({"a": b"1"}, "Opaque", "v", KEY)
    assert h != rx.data_hash({"a1": b""}, "Opaque", "u", KEY)
    assert "1" not in h[:0]  # no value inside by construction; hash is hex
    assert len(h) == 40


def test_hash_is_keyed() -> None:
    """Without the controller's key the status hash cannot be recomputed (no offline guessing
    of a short value by whoever can read the ExternalSecret); with the same key it is stable."""
    import hashlib
    import hmac

    data = {"pw": b"hunter2"}
    h = rx.data_hash(data, "Opaque", UID, KEY)
    assert h == rx.data_hash(dict(data), "Opaque", UID, bytes(range(32)))  # same key: stable
    other_key = bytes(range(1, 33))
    assert h != rx.data_hash(data, "Opaque", UID, other_key)
    # it is the HMAC-SHA256 under the key, not a plain (guessable) SHA-256 of the same input
    material = UID.encode() + b"\0Opaque\0" + b"pw\0" + hashlib.sha256(b"hunter2").digest()
    assert h == hmac.new(KEY, material, hashlib.sha256).hexdigest()[:40]
    assert h != hashlib.sha256(material).hexdigest()[:40]
    # drift under another key: the Secret no longer matches the recorded hash
    spec, d, obj = synced(DATA, {"pw": b"1"})
    assert rx.drift(d, spec, obj, hash_key=KEY) is None
    assert rx.drift(d, spec, obj, hash_key=other_key) == "data or type edited"


def test_plan_no_churn_when_equal() -> None:
    spec, d = desired_for(DATA, {"pw": b"1"})
    existing = json.loads(json.dumps(d))
    existing["metadata"]["annotations"]["other-tool"] = "kept"
    existing["metadata"]["resourceVersion"] = "5"
    assert rx.plan_secret(existing, d, spec, "app").action == "none"


def test_plan_create_patch_recreate() -> None:
    spec, d = desired_for(DATA, {"pw": b"1"})
    assert rx.plan_secret(None, d, spec, "app").action == "create"
    edited = json.loads(json.dumps(d))
    edited["data"] = {"pw": b64(b"hand-edited"), "extra": b64(b"x")}
    plan = rx.plan_secret(edited, d, spec, "app")
    assert plan.action == "patch" and plan.patch == {"data": {"extra": None, "pw": b64(b"1")}}
    retyped = {**json.loads(json.dumps(d)), "type": "kubernetes.io/tls"}
    assert rx.plan_secret(retyped, d, spec, "app").action == "recreate"
    unlabelled = json.loads(json.dumps(d))
    del unlabelled["metadata"]["labels"][api.LABEL_MANAGED_BY]
    plan = rx.plan_secret(unlabelled, d, spec, "app")
    assert plan.action == "patch" and plan.patch == {
        "metadata": {"labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY_VALUE}}
    }


def test_plan_blocks_foreign_secret_and_allows_handover() -> None:
    spec, d = desired_for(DATA, {"pw": b"1"})
    foreign = {"metadata": {"name": "app", "annotations": {}}, "data": {"pw": b64(b"theirs")}}
    plan = rx.plan_secret(foreign, d, spec, "app")
    assert plan.action == "blocked" and "someone else" in plan.message
    other = {"metadata": {"name": "app", "annotations": {rx.ANN_OWNER: "other"}}}
    assert "'other'" in rx.plan_secret(other, d, spec, "app").message
    handed = {
        "metadata": {"name": "app", "annotations": {api.ANN_MANAGED: "true"}},
        "data": {"pw": b64(b"theirs")},
    }
    assert rx.plan_secret(handed, d, spec, "app").action == "patch"


def test_plan_merge_touches_only_our_keys() -> None:
    spec, d = desired_for({**DATA, "target": {"creationPolicy": "Merge"}}, {"pw": b"1"})
    assert rx.plan_secret(None, d, spec, "app").action == "blocked"
    theirs = {
        "metadata": {"name": "app", "labels": {"helm": "x"}},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(b"c")},
    }
    plan = rx.plan_secret(theirs, d, spec, "app")
    assert plan.action == "patch"
    assert plan.patch is not None and plan.patch["data"] == {"pw": b64(b"1")}
    assert plan.patch["metadata"]["annotations"][rx.ANN_MANAGED_KEYS] == "pw"
    assert "type" not in plan.patch
    merged = {
        "metadata": {
            "name": "app",
            "labels": {**d["metadata"]["labels"]},
            "annotations": {**d["metadata"]["annotations"], rx.ANN_MANAGED_KEYS: "old,pw"},
        },
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(b"c"), "pw": b64(b"1"), "old": b64(b"o")},
    }
    plan = rx.plan_secret(merged, d, spec, "app")
    assert plan.patch is not None and plan.patch["data"] == {"old": None}
    # Merge never recreates someone else's Secret: an immutable one is refused, untouched
    frozen = {**merged, "immutable": True}
    plan = rx.plan_secret(frozen, d, spec, "app")
    assert (plan.action, plan.changed) == ("blocked", ("immutable",))
    assert "immutable" in plan.message and plan.body is None


def test_plan_none_policy_and_immutable() -> None:
    spec, d = desired_for({**DATA, "target": {"creationPolicy": "None"}}, {"pw": b"1"})
    assert rx.plan_secret(None, d, spec, "app").action == "none"
    spec, d = desired_for({**DATA, "target": {"immutable": True}}, {"pw": b"2"})
    old = json.loads(json.dumps(d))
    old["data"] = {"pw": b64(b"1")}
    assert rx.plan_secret(old, d, spec, "app").action == "recreate"
    # immutability set after the Secret exists: the same data becomes immutable in place
    mutable = json.loads(json.dumps(d))
    del mutable["immutable"]
    plan = rx.plan_secret(mutable, d, spec, "app")
    assert plan.action == "patch" and plan.patch == {"immutable": True}


def synced(spec_d: dict[str, Any], data: dict[str, bytes]) -> tuple[Any, dict[str, Any], Any]:
    spec, d = desired_for(spec_d, data)
    obj = es(spec_d, syncedDataHash=d["metadata"]["annotations"][api.ANN_DATA_HASH])
    return spec, d, obj


def test_drift() -> None:
    spec, d, obj = synced(DATA, {"pw": b"1"})
    assert rx.drift(d, spec, obj, hash_key=KEY) is None
    assert rx.drift(None, spec, obj, hash_key=KEY) == "target Secret deleted"
    edited = json.loads(json.dumps(d))
    edited["data"]["pw"] = b64(b"2")
    assert rx.drift(edited, spec, obj, hash_key=KEY) == "data or type edited"
    retyped = {**json.loads(json.dumps(d)), "type": "kubernetes.io/tls"}
    assert rx.drift(retyped, spec, obj, hash_key=KEY) == "data or type edited"
    relabelled = json.loads(json.dumps(d))
    relabelled["metadata"]["labels"] = {}
    assert rx.drift(relabelled, spec, obj, hash_key=KEY) == "managed-by label removed"
    spec_o, _d_o, obj_o = synced({**DATA, "target": {"creationPolicy": "Orphan"}}, {"pw": b"1"})
    # Orphan: no drift repair (documented)
    assert rx.drift(None, spec_o, obj_o, hash_key=KEY) is None
    never = es(DATA)
    assert rx.drift(None, spec, never, hash_key=KEY) is None


def test_status_no_churn_and_transitions() -> None:
    s1 = build_status(
        None,
        generation=1,
        ready=True,
        reason="Synced",
        message="ok",
        now="T1",
        data_hash="h1",
        target="app",
    )
    assert s1["lastChangeTime"] == "T1" and s1["conditions"][0]["lastTransitionTime"] == "T1"
    s2 = build_status(
        s1,
        generation=1,
        ready=True,
        reason="Synced",
        message="ok",
        now="T2",
        data_hash="h1",
        target="app",
    )
    assert status_patch(s1, s2) is None, "same data later: no status write"
    s3 = build_status(
        s2,
        generation=1,
        ready=True,
        reason="Synced",
        message="ok",
        now="T3",
        data_hash="h2",
        target="app",
    )
    assert status_patch(s1, s3) == {"syncedDataHash": "h2", "lastChangeTime": "T3"}
    s4 = build_status(
        s3,
        generation=1,
        ready=False,
        reason="BackendUnavailable",
        message="down\nsecond line",
        now="T4",
    )
    assert s4["syncedDataHash"] == "h2", "a failure keeps the hash of what is in the Secret"
    assert s4["conditions"][0]["message"] == "down"
    assert condition_changed(s3, s4) and not condition_changed(s4, s4)
    p = status_patch(s3, s4)
    assert p is not None and list(p) == ["conditions"]


@pytest.mark.parametrize(
    ("source", "target", "name", "want"),
    [("^(.*)$", "db_$1", "password", "db_password"),
     ("(?P<x>a)", "${x}.x", "a", "a.x"),
     ("/", "_", "team/app/db", "team_app_db"),
     ("^prefix-", "", "prefix-key", "key")],
)
def test_rewrite_accepts_go_replacement_syntax(source: str, target: str, name: str,
                                               want: str) -> None:
    spec = parse_spec(es({"dataFrom": [{"extract": {"key": "m"}, "rewrite": [
        {"regexp": {"source": source, "target": target}}]}]}))
    out = xd.assemble(spec, {xd.Fetch("get_map", "m"): {name: b"v"}})
    assert out.data == {want: b"v"}


def test_properties_are_selected_from_one_fetch() -> None:
    spec = parse_spec(es({"data": [
        {"secretKey": "u", "remoteRef": {"key": "db", "property": "user"}},
        {"secretKey": "p", "remoteRef": {"key": "db", "property": "nested.pw"}}]}))
    out = xd.assemble(spec, {xd.Fetch("get", "db"): b'{"user":"a","nested":{"pw":"b"}}'})
    assert out.data == {"u": b"a", "p": b"b"}
    spec = parse_spec(es({"data": [{"secretKey": "u", "remoteRef": {"key": "db",
                                                                     "property": "nope"}}]}))
    with pytest.raises(SecretNotFound) as info:
        xd.assemble(spec, {xd.Fetch("get", "db"): b'{"user":"s3cr3t"}'})
    assert "nope" in str(info.value) and "s3cr3t" not in str(info.value)
