"""Secret document <-> SealedSecret document (pure dict functions) and manifest parsing."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from secretsync import api
from secretsync.documents import dump_documents, load_documents
from secretsync.errors import CiphertextTooShort, InvalidInput
from secretsync.keys import KeyRegistry
from secretsync.sealing import (
    encrypted_items,
    fingerprint_hint,
    merge_into,
    reseal,
    scope_of,
    seal_secret,
    sealed_label,
    secret_from_items,
    secret_items,
)
from tests.keypairs import keypair


def _secret(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "app",
            "labels": {"app": "db"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"pw":"c2VjcmV0"}}',
                "team": "payments",
            },
        },
        "type": "kubernetes.io/basic-auth",
        "data": {"password": base64.b64encode(b"s3cret").decode()},
        "stringData": {"username": "admin"},
    }
    doc.update(extra)
    return doc


def _unseal(sealed: dict[str, Any], reg: KeyRegistry) -> dict[str, Any]:
    label = sealed_label(sealed)
    values = {
        k: reg.decrypt(v, label, fingerprint_hint(sealed))
        for k, v in encrypted_items(sealed).items()
    }
    return secret_from_items(sealed, values)


@pytest.mark.parametrize("scope", api.SCOPES)
def test_seal_and_unseal_documents_each_scope(scope: str) -> None:
    k = keypair(0).key
    sealed = seal_secret(_secret(), k.public_key, k.fingerprint, scope=scope)
    assert sealed["apiVersion"] == "secretsync.io/v1alpha1"
    assert sealed["kind"] == "SealedSecret"
    assert sealed["metadata"]["name"] == "db" and sealed["metadata"]["namespace"] == "app"
    ann = sealed["metadata"]["annotations"]
    assert ann[api.ANN_KEY_FINGERPRINT] == k.fingerprint
    if scope == "strict":
        assert api.ANN_SCOPE not in ann
    else:
        assert ann[api.ANN_SCOPE] == scope
    assert (ann.get(api.BITNAMI_ANN_CLUSTER_WIDE) == "true") == (scope == "cluster-wide")
    assert (ann.get(api.BITNAMI_ANN_NAMESPACE_WIDE) == "true") == (scope == "namespace-wide")
    template = sealed["spec"]["template"]
    assert template == {
        "metadata": {"labels": {"app": "db"}, "annotations": {"team": "payments"}},
        "type": "kubernetes.io/basic-auth",
    }
    assert set(sealed["spec"]["encryptedData"]) == {"password", "username"}
    assert "s3cret" not in str(sealed) and "admin" not in str(sealed)

    secret = _unseal(sealed, KeyRegistry([k]))
    assert secret["metadata"] == {
        "name": "db",
        "namespace": "app",
        "labels": {"app": "db"},
        "annotations": {"team": "payments"},
    }
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret_items(secret) == {"password": b"s3cret", "username": b"admin"}


def test_scope_moves_are_rejected_at_document_level() -> None:
    k = keypair(0).key
    reg = KeyRegistry([k])
    strict = seal_secret(_secret(), k.public_key, k.fingerprint)
    renamed = copy.deepcopy(strict)
    renamed["metadata"]["name"] = "other"
    moved = copy.deepcopy(strict)
    moved["metadata"]["namespace"] = "other"
    widened = copy.deepcopy(strict)
    widened["metadata"]["annotations"][api.BITNAMI_ANN_CLUSTER_WIDE] = "true"
    for doc in (renamed, moved, widened):
        with pytest.raises(Exception, match="could decrypt the item"):
            _unseal(doc, reg)
    ns_wide = seal_secret(_secret(), k.public_key, k.fingerprint, scope="namespace-wide")
    ns_wide["metadata"]["name"] = "any-name-works"
    assert _unseal(ns_wide, reg)["metadata"]["name"] == "any-name-works"


def test_bitnami_scope_annotations_honoured() -> None:
    assert scope_of({}) == "strict"
    assert scope_of({api.BITNAMI_ANN_NAMESPACE_WIDE: "true"}) == "namespace-wide"
    assert scope_of({api.BITNAMI_ANN_CLUSTER_WIDE: "true"}) == "cluster-wide"
    both = {api.BITNAMI_ANN_CLUSTER_WIDE: "true", api.BITNAMI_ANN_NAMESPACE_WIDE: "true"}
    assert scope_of(both) == "cluster-wide"
    assert scope_of({api.BITNAMI_ANN_CLUSTER_WIDE: "false"}) == "strict"
    assert scope_of({api.ANN_SCOPE: "namespace-wide", **both}) == "namespace-wide"
    with pytest.raises(InvalidInput):
        scope_of({api.ANN_SCOPE: "galaxy-wide"})

    k = keypair(0).key
    doc = _secret()
    doc["metadata"]["annotations"][api.BITNAMI_ANN_CLUSTER_WIDE] = "true"
    del doc["metadata"]["namespace"]
    sealed = seal_secret(doc, k.public_key, k.fingerprint)
    assert sealed["metadata"]["annotations"][api.ANN_SCOPE] == "cluster-wide"
    assert "namespace" not in sealed["metadata"]
    # scope annotations describe the sealing, not the Secret: not in the template
    assert api.BITNAMI_ANN_CLUSTER_WIDE not in sealed["spec"]["template"]["metadata"]["annotations"]
    # --scope overrides the annotations
    forced = seal_secret(doc, k.public_key, k.fingerprint, scope="strict", default_namespace="x")
    assert api.ANN_SCOPE not in forced["metadata"]["annotations"]


def test_bitnami_api_version_unseals() -> None:
    k = keypair(0).key
    sealed = seal_secret(_secret(), k.public_key, k.fingerprint)
    sealed["apiVersion"] = "bitnami.com/v1alpha1"
    del sealed["metadata"]["annotations"]
    assert secret_items(_unseal(sealed, KeyRegistry([k])))["username"] == b"admin"


def test_seal_input_errors() -> None:
    k = keypair(0).key

    def seal(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return seal_secret(doc, k.public_key, k.fingerprint, **kw)

    with pytest.raises(InvalidInput, match="not a Secret"):
        seal({"kind": "ConfigMap", "metadata": {"name": "x"}})
    no_ns = _secret()
    del no_ns["metadata"]["namespace"]
    with pytest.raises(InvalidInput, match="strict scope needs a namespace"):
        seal(no_ns)
    with pytest.raises(InvalidInput, match="namespace-wide scope needs a namespace"):
        seal(no_ns, scope="namespace-wide")
    assert seal(no_ns, default_namespace="dflt")["metadata"]["namespace"] == "dflt"
    with pytest.raises(InvalidInput, match=r"metadata\.name"):
        seal({"kind": "Secret", "metadata": {"namespace": "x"}, "stringData": {"a": "b"}})
    empty = _secret(data=None, stringData=None)
    with pytest.raises(InvalidInput, match="allow-empty-data"):
        seal(empty)
    assert seal(empty, allow_empty_data=True)["spec"]["encryptedData"] == {}
    with pytest.raises(InvalidInput, match=r"data\.password is not valid base64") as bad:
        seal(_secret(data={"password": "not*base64"}))
    assert "not*base64" not in str(bad.value)
    with pytest.raises(InvalidInput, match=r"stringData\.port must be a string") as num:
        seal(_secret(stringData={"port": 54321}))
    assert "54321" not in str(num.value)


def test_template_keeps_type_and_immutable_and_stringdata_wins() -> None:
    k = keypair(0).key
    doc = _secret(immutable=True, stringData={"password": "from-stringData"})
    sealed = seal_secret(doc, k.public_key, k.fingerprint)
    assert sealed["spec"]["template"]["immutable"] is True
    secret = _unseal(sealed, KeyRegistry([k]))
    assert secret["immutable"] is True
    assert secret_items(secret)["password"] == b"from-stringData"
    plain = seal_secret(_secret(type=None), k.public_key, k.fingerprint)
    assert plain["spec"]["template"]["type"] == "Opaque"


def test_reseal_keeps_everything_but_the_items() -> None:
    old, new = keypair(0).key, keypair(1).key
    sealed = seal_secret(_secret(), old.public_key, old.fingerprint, scope="namespace-wide")
    sealed["metadata"]["labels"] = {"keep": "me"}
    sealed["status"] = {"observedGeneration": 3}
    reg_old = KeyRegistry([old])
    values = {
        k: reg_old.decrypt(v, sealed_label(sealed)) for k, v in encrypted_items(sealed).items()
    }
    out = reseal(sealed, values, new.public_key, new.fingerprint)
    assert out["metadata"]["labels"] == {"keep": "me"} and out["status"] == sealed["status"]
    assert out["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == new.fingerprint
    assert out["metadata"]["annotations"][api.ANN_SCOPE] == "namespace-wide"
    assert list(out["spec"]["encryptedData"]) == list(sealed["spec"]["encryptedData"])
    assert out["spec"]["template"] == sealed["spec"]["template"]
    assert secret_items(_unseal(out, KeyRegistry([new])))["username"] == b"admin"
    with pytest.raises(Exception, match="could decrypt the item"):
        _unseal(out, reg_old)
    assert sealed["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == old.fingerprint


def test_merge_into_replaces_and_keeps_items() -> None:
    k = keypair(0).key
    sealed = seal_secret(_secret(), k.public_key, k.fingerprint, scope="namespace-wide")
    update = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "ignored"},
        "stringData": {"password": "new", "extra": "x"},
    }
    merged = merge_into(sealed, update, k.public_key, k.fingerprint)
    got = secret_items(_unseal(merged, KeyRegistry([k])))
    assert got == {"password": b"new", "username": b"admin", "extra": b"x"}


def test_encrypted_items_errors() -> None:
    doc = {"apiVersion": api.API_VERSION, "kind": "SealedSecret", "metadata": {"name": "x"}}
    with pytest.raises(CiphertextTooShort, match=r"spec\.encryptedData\.a"):
        encrypted_items({**doc, "spec": {"encryptedData": {"a": "%%%"}}})
    with pytest.raises(InvalidInput, match="legacy"):
        encrypted_items({**doc, "spec": {"data": "abc"}})
    with pytest.raises(InvalidInput, match="no namespace"):
        sealed_label(doc)
    with pytest.raises(InvalidInput, match="not a SealedSecret"):
        sealed_label({"kind": "Secret"})


def test_load_documents_formats() -> None:
    yaml_text = "a: 1\n---\n---\nkind: List\nitems:\n- b: 2\n- c: 3\n"
    docs, fmt = load_documents(yaml_text.encode(), "f")
    assert fmt == "yaml" and docs == [{"a": 1}, {"b": 2}, {"c": 3}]
    raw, _ = load_documents(yaml_text, "f", expand_lists=False)
    assert len(raw) == 2
    for text in ('{"a": 1}\n{"b": 2}', '[{"a": 1}, {"b": 2}]', ' \n{"a":1}{"b":2}\n'):
        docs, fmt = load_documents(text, "f")
        assert fmt == "json" and docs == [{"a": 1}, {"b": 2}]
    with pytest.raises(InvalidInput, match="f: invalid YAML at line 3") as err:
        load_documents("a: 1\npassword: [hunter2\n", "f")
    assert "hunter2" not in str(err.value)
    with pytest.raises(InvalidInput, match="invalid JSON"):
        load_documents('{"a": 1', "f")
    with pytest.raises(InvalidInput, match="document 2 is not a mapping"):
        load_documents("a: 1\n---\n- x\n", "f")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        load_documents(b"\xff\xfe\x00", "f")
    long = {"k": "A" * 5000}
    assert load_documents(dump_documents([long, long], "yaml"), "x")[0] == [long, long]
    assert "\n" not in dump_documents([long], "yaml").strip()
