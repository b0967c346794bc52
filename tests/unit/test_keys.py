"""Key loading (PEM, key Secrets), the registry's key choice, Secret <-> key, unseal_many."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading

import pytest
import yaml

from secretsync import api
from secretsync.crypto import pem
from secretsync.crypto.format import seal_item
from secretsync.errors import CiphertextTooShort, DecryptionFailed, KeyError_
from secretsync.keys import (
    KeyRegistry,
    SealingKey,
    UnsealJob,
    is_compromised,
    key_from_secret,
    load_private_keys,
    secret_body_for_key,
    unseal_many,
)
from tests.keypairs import keypair


def _with_created(key: SealingKey, created: dt.datetime) -> SealingKey:
    return SealingKey(key.private_key, key.certificate, created, key.name)


def test_secret_body_round_trip() -> None:
    k = keypair(0).key
    body = secret_body_for_key(k, namespace="secretsync")
    assert body["type"] == "kubernetes.io/tls"
    assert body["metadata"]["labels"] == {api.LABEL_SEALING_KEY: "active"}
    assert body["metadata"]["namespace"] == "secretsync"
    assert k.fingerprint[:16] in body["metadata"]["name"]
    assert base64.b64decode(body["data"]["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY")
    back = key_from_secret(json.loads(json.dumps(body)))
    assert back.fingerprint == k.fingerprint
    assert back.created == k.created
    assert back.name == body["metadata"]["name"]


def test_key_from_bitnami_style_secret_without_cert() -> None:
    k = keypair(0).key
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "sealed-secrets-keyabcde",
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {api.BITNAMI_LABEL_SEALING_KEY: "compromised"},
        },
        "type": "kubernetes.io/tls",
        "data": {"tls.key": base64.b64encode(pem.private_key_to_pem(k.private_key)).decode()},
    }
    got = key_from_secret(secret)
    assert got.fingerprint == k.fingerprint
    assert got.created == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert got.certificate is None
    assert is_compromised(secret)


def test_key_from_secret_errors_name_the_secret() -> None:
    with pytest.raises(KeyError_, match=r"Secret ns/k: no tls\.key"):
        key_from_secret({"kind": "Secret", "metadata": {"name": "k", "namespace": "ns"}})
    with pytest.raises(KeyError_, match="not valid base64"):
        key_from_secret({"kind": "Secret", "metadata": {"name": "k"}, "data": {"tls.key": "!!"}})
    mismatched = secret_body_for_key(keypair(0).key, namespace="x")
    mismatched["data"]["tls.crt"] = base64.b64encode(keypair(1).cert_path.read_bytes()).decode()
    with pytest.raises(KeyError_, match="does not belong"):
        key_from_secret(mismatched)


def test_load_private_keys_from_files() -> None:
    k0, k1 = keypair(0), keypair(1)
    pem_one = k0.key_path.read_bytes()
    assert [k.fingerprint for k in load_private_keys(pem_one, "f")] == [k0.fingerprint]
    bundle = pem_one + k0.cert_path.read_bytes() + k1.key_path.read_bytes()
    loaded = load_private_keys(bundle, "bundle")
    assert [k.fingerprint for k in loaded] == [k0.fingerprint, k1.fingerprint]
    assert loaded[0].certificate is not None and loaded[1].certificate is None

    s0 = secret_body_for_key(k0.key, namespace="kube-system")
    s1 = secret_body_for_key(k1.key, namespace="kube-system")
    as_list = {"apiVersion": "v1", "kind": "List", "items": [s0, s1]}
    for text in (
        yaml.safe_dump(as_list),
        json.dumps(as_list),
        yaml.safe_dump_all([s0, s1]),
        json.dumps(s0) + "\n" + json.dumps(s1),
    ):
        got = load_private_keys(text.encode(), "secrets")
        assert {k.fingerprint for k in got} == {k0.fingerprint, k1.fingerprint}

    with pytest.raises(KeyError_, match="no private key"):
        load_private_keys(k0.cert_path.read_bytes(), "cert.pem")
    with pytest.raises(KeyError_, match="junk"):
        load_private_keys(b"::: not yaml [", "junk")
    with pytest.raises(KeyError_, match=r"cm\.yaml"):
        load_private_keys(b"kind: ConfigMap\nmetadata: {name: x}\n", "cm.yaml")


def test_registry_order_and_newest() -> None:
    a = _with_created(keypair(0).key, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    b = _with_created(keypair(1).key, dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    reg = KeyRegistry([a, b])
    assert reg.newest().fingerprint == b.fingerprint
    assert reg.fingerprints() == [b.fingerprint, a.fingerprint]
    assert [k.fingerprint for k in reg.candidates(a.fingerprint)] == [a.fingerprint, b.fingerprint]
    assert [k.fingerprint for k in reg.candidates("unknown")] == [b.fingerprint, a.fingerprint]
    reg.remove(b.fingerprint)
    assert reg.newest().fingerprint == a.fingerprint and len(reg) == 1
    reg.remove(a.fingerprint)
    with pytest.raises(KeyError_):
        reg.newest()


def test_registry_decrypt_uses_hint_then_falls_back() -> None:
    a, b = keypair(0).key, keypair(1).key
    reg = KeyRegistry([a, b])
    item = seal_item(a.public_key, b"v", b"ns/n")
    assert reg.decrypt(item, b"ns/n", a.fingerprint) == b"v"
    assert reg.decrypt(item, b"ns/n", b.fingerprint) == b"v"  # wrong hint still works
    assert reg.decrypt(item, b"ns/n") == b"v"
    with pytest.raises(DecryptionFailed, match="none of 2 key"):
        reg.decrypt(item, b"ns/other", a.fingerprint)
    with pytest.raises(CiphertextTooShort):
        reg.decrypt(item[:10], b"ns/n")
    with pytest.raises(DecryptionFailed, match="no private key"):
        KeyRegistry().decrypt(item, b"ns/n")
    small = seal_item(keypair(2, 2048).key.public_key, b"v", b"")
    with pytest.raises(DecryptionFailed, match="2048"):
        reg.decrypt(small, b"")


def test_registry_decrypt_tries_hinted_key_first() -> None:
    """With the right hint only one RSA decryption happens (counted via a wrapper key)."""
    a, b = keypair(0).key, keypair(1).key
    calls: list[str] = []

    class Counting:
        def __init__(self, key: SealingKey) -> None:
            self._k = key.private_key
            self.key_size = key.private_key.key_size

        def decrypt(self, ct: bytes, pad: object) -> bytes:
            calls.append(pem.fingerprint(self._k.public_key()))
            return self._k.decrypt(ct, pad)  # type: ignore[arg-type]

        def public_key(self) -> object:
            return self._k.public_key()

    wrapped = [
        SealingKey(Counting(k), None, k.created, None, k.fingerprint)  # type: ignore[arg-type]
        for k in (a, b)
    ]
    reg = KeyRegistry(wrapped)
    item = seal_item(a.public_key, b"v", b"")
    reg.decrypt(item, b"", a.fingerprint)
    assert calls == [a.fingerprint]


def test_unseal_many_results_and_errors_in_order() -> None:
    k = keypair(0).key
    reg = KeyRegistry([k])
    jobs = [UnsealJob(seal_item(k.public_key, f"v{i}".encode(), b"ns"), b"ns") for i in range(8)]
    jobs.insert(3, UnsealJob(b"\x00", b"ns"))
    jobs.insert(5, UnsealJob(jobs[0].item, b"other"))
    seen_threads: set[str] = set()
    orig = reg.decrypt

    def spy(item: bytes, label: bytes, hint: str | None = None) -> bytes:
        seen_threads.add(threading.current_thread().name)
        return orig(item, label, hint)

    reg.decrypt = spy  # type: ignore[method-assign]
    for workers in (1, 2):
        out = unseal_many(reg, jobs, workers=workers)
        assert isinstance(out[3], CiphertextTooShort)
        assert isinstance(out[5], DecryptionFailed)
        plain = [r for i, r in enumerate(out) if i not in (3, 5)]
        assert plain == [f"v{i}".encode() for i in range(8)]
    assert any(name.startswith("unseal") for name in seen_threads)
