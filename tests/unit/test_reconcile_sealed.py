"""SealedSecret -> Secret as pure functions: unseal, template, key choice, failure reasons."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from secretsync import api
from secretsync.errors import DecryptionFailed
from secretsync.keys import KeyRegistry, SealingKey
from secretsync.reconcile import sealed as rs
from secretsync.sealing import seal_secret
from tests.keypairs import keypair

VALUE = "correct-horse-battery-staple"


def secret(**meta: Any) -> dict[str, Any]:
    m = {"name": "db", "namespace": "app", **meta}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": m,
            "stringData": {"password": VALUE, "user": "admin"}}


def sealed_for(key: SealingKey, scope: str | None = None, **meta: Any) -> dict[str, Any]:
    doc = seal_secret(secret(**meta), key.public_key, key.fingerprint, scope=scope)
    doc["metadata"]["uid"] = "uid-1"
    doc["metadata"]["generation"] = 1
    return doc


def decoded(s: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in s["data"].items()}


@pytest.fixture(scope="module")
def k0() -> SealingKey:
    return keypair(0).key


@pytest.fixture(scope="module")
def k1() -> SealingKey:
    return keypair(1).key


def test_unseal_builds_owned_secret_with_template(k0: SealingKey) -> None:
    doc = sealed_for(k0, labels={"team": "a"}, annotations={"note": "n"})
    doc["spec"]["template"].update(type="kubernetes.io/basic-auth", immutable=True)
    doc["spec"]["template"]["data"] = {"dsn": "pg://{{ user }}:{{ password }}@h/db"}
    out = rs.unseal(doc, KeyRegistry([k0]))
    assert decoded(out) == {"password": VALUE.encode(), "user": b"admin",
                            "dsn": f"pg://admin:{VALUE}@h/db".encode()}
    assert out["type"] == "kubernetes.io/basic-auth"
    assert out["immutable"] is True
    assert out["metadata"]["labels"]["team"] == "a"
    assert out["metadata"]["labels"][api.LABEL_MANAGED_BY] == api.MANAGED_BY_VALUE
    assert out["metadata"]["annotations"] == {"note": "n"}
    assert out["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert out["metadata"]["ownerReferences"][0]["controller"] is True


def test_fingerprint_hint_costs_one_rsa_operation(k0: SealingKey, k1: SealingKey) -> None:
    calls: list[str] = []

    class Counting(KeyRegistry):
        def candidates(self, fingerprint_hint: str | None = None) -> list[SealingKey]:
            out = super().candidates(fingerprint_hint)
            calls.append(out[0].fingerprint)
            return out

    # k0 is the older key; the newest (k1) would be tried first without the hint
    reg = Counting([k0, k1])
    doc = sealed_for(k0)
    rs.unseal(doc, reg)
    assert calls and all(fp == k0.fingerprint for fp in calls)


def test_without_hint_any_key_works(k0: SealingKey, k1: SealingKey) -> None:
    doc = sealed_for(k0)
    del doc["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT]
    assert decoded(rs.unseal(doc, KeyRegistry([k1, k0])))["password"] == VALUE.encode()


def reason_of(doc: dict[str, Any], reg: KeyRegistry) -> rs.SealFailure:
    with pytest.raises(rs.SealFailure) as info:
        rs.unseal(doc, reg)
    assert VALUE not in info.value.message
    return info.value


def test_wrong_key_is_decrypt_failed(k0: SealingKey, k1: SealingKey) -> None:
    err = reason_of(sealed_for(k0), KeyRegistry([k1]))
    assert err.reason == rs.REASON_DECRYPT_FAILED
    assert "does not hold" in err.message


def test_wrong_namespace_is_decrypt_failed_naming_our_key(k0: SealingKey) -> None:
    doc = sealed_for(k0)
    doc["metadata"]["namespace"] = "elsewhere"
    err = reason_of(doc, KeyRegistry([k0]))
    assert err.reason == rs.REASON_DECRYPT_FAILED
    assert "another name/namespace" in err.message


def test_scope_mismatch_detected(k0: SealingKey) -> None:
    doc = sealed_for(k0, scope=api.SCOPE_NAMESPACE)
    anns = doc["metadata"]["annotations"]
    for a in (api.ANN_SCOPE, api.BITNAMI_ANN_NAMESPACE_WIDE):
        anns.pop(a, None)
    err = reason_of(doc, KeyRegistry([k0]))
    assert err.reason == rs.REASON_SCOPE_MISMATCH
    assert "namespace-wide" in err.message


def test_tampered_item_fails(k0: SealingKey) -> None:
    doc = sealed_for(k0)
    raw = bytearray(base64.b64decode(doc["spec"]["encryptedData"]["password"]))
    raw[-1] ^= 1  # flip a bit of the GCM tag
    doc["spec"]["encryptedData"]["password"] = base64.b64encode(bytes(raw)).decode()
    assert reason_of(doc, KeyRegistry([k0])).reason == rs.REASON_DECRYPT_FAILED


def test_garbage_item_and_spec(k0: SealingKey) -> None:
    doc = sealed_for(k0)
    doc["spec"]["encryptedData"]["password"] = "not base64!!"
    assert reason_of(doc, KeyRegistry([k0])).reason == rs.REASON_DECRYPT_FAILED
    doc2 = sealed_for(k0)
    doc2["spec"]["encryptedData"]["password"] = "AAAA"
    assert reason_of(doc2, KeyRegistry([k0])).reason == rs.REASON_DECRYPT_FAILED
    doc3 = sealed_for(k0)
    doc3["spec"] = {"encryptedData": {}}
    assert reason_of(doc3, KeyRegistry([k0])).reason == rs.REASON_INVALID_SPEC
    doc4 = sealed_for(k0)
    doc4["spec"]["template"] = {"metadata": {"labels": {"a": 1}}}
    assert reason_of(doc4, KeyRegistry([k0])).reason == rs.REASON_INVALID_SPEC


def test_invalid_template_names_key_not_value(k0: SealingKey) -> None:
    doc = sealed_for(k0)
    doc["spec"]["template"]["data"] = {"dsn": "{{ missing }}-{{ password }}"}
    err = reason_of(doc, KeyRegistry([k0]))
    assert err.reason == rs.REASON_INVALID_TEMPLATE
    assert "dsn" in err.message


def test_no_keys(k0: SealingKey) -> None:
    assert reason_of(sealed_for(k0), KeyRegistry()).reason in (
        rs.REASON_NO_KEYS, rs.REASON_DECRYPT_FAILED)


def test_decrypt_one_returns_errors_instead_of_raising(k0: SealingKey, k1: SealingKey) -> None:
    prepared = rs.prepare(sealed_for(k0))
    result = rs.decrypt_one(KeyRegistry([k1]), prepared, "password")
    assert isinstance(result, DecryptionFailed)


def test_prepare_does_not_mutate(k0: SealingKey) -> None:
    doc = sealed_for(k0)
    before = copy.deepcopy(doc)
    rs.unseal(doc, KeyRegistry([k0]))
    assert doc == before


def test_cache_key_follows_generation_scope_and_hint() -> None:
    doc: dict[str, Any] = {"metadata": {"name": "db", "namespace": "app", "generation": 1,
                                        "annotations": {}}, "spec": {}}
    base = rs.cache_key(doc)
    assert rs.cache_key(copy.deepcopy(doc)) == base
    bumped = copy.deepcopy(doc)
    bumped["metadata"]["generation"] = 2
    assert rs.cache_key(bumped) != base
    scoped = copy.deepcopy(doc)
    scoped["metadata"]["annotations"][api.ANN_SCOPE] = api.SCOPE_NAMESPACE
    assert rs.cache_key(scoped) != base
    hinted = copy.deepcopy(doc)
    hinted["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] = "ab" * 32
    assert rs.cache_key(hinted) != base
    unrelated = copy.deepcopy(doc)
    unrelated["metadata"]["annotations"]["team"] = "x"
    assert rs.cache_key(unrelated) == base
    bad = copy.deepcopy(doc)
    bad["metadata"]["annotations"][api.ANN_SCOPE] = "galaxy"
    with pytest.raises(rs.SealFailure) as exc:
        rs.cache_key(bad)
    assert exc.value.reason == rs.REASON_INVALID_SPEC
