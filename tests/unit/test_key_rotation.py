"""Key rotation must not strand items (issue 21, item 4).

``seal --merge-into`` with a new certificate leaves the kept items on the old key: the
``key-fingerprint`` annotation then names no single key and is dropped; ``reencrypt``
attributes each item to the key that opens it (never to the annotation); and the controller
still unseals a mixed or wrongly-hinted SealedSecret, the annotation being only a hint.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from secretsync import api
from secretsync.cli.reencrypt import reencrypt_file
from secretsync.documents import dump_documents, load_documents
from secretsync.errors import DecryptionFailed
from secretsync.keys import KeyRegistry, UnsealJob, unseal_many_keyed
from secretsync.reconcile import sealed as rs
from secretsync.sealing import (
    encrypted_items,
    fingerprint_hint,
    merge_into,
    reseal,
    seal_secret,
    sealed_label,
)
from tests.keypairs import keypair


def _secret(**values: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "app"},
        "stringData": values,
    }


def _mixed() -> dict[str, Any]:
    """Sealed to A, then ``password`` merged in with B's certificate."""
    a, b = keypair(0).key, keypair(1).key
    doc = seal_secret(_secret(user="admin", password="old"), a.public_key, a.fingerprint)
    return merge_into(doc, _secret(password="new"), b.public_key, b.fingerprint)


def _plain(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def test_merge_with_another_key_drops_the_fingerprint() -> None:
    merged = _mixed()
    assert fingerprint_hint(merged) is None
    assert api.ANN_KEY_FINGERPRINT not in (merged["metadata"].get("annotations") or {})


def test_merge_keeps_the_fingerprint_when_every_item_is_on_the_key() -> None:
    a, b = keypair(0).key, keypair(1).key
    doc = seal_secret(_secret(user="admin"), a.public_key, a.fingerprint)
    same = merge_into(doc, _secret(password="p"), a.public_key, a.fingerprint)
    assert fingerprint_hint(same) == a.fingerprint
    # every item replaced: all of them are on B now
    replaced = merge_into(doc, _secret(user="root"), b.public_key, b.fingerprint)
    assert fingerprint_hint(replaced) == b.fingerprint
    # once dropped, a later merge with B does not bring it back while A's items remain
    again = merge_into(_mixed(), _secret(x="1"), b.public_key, b.fingerprint)
    assert fingerprint_hint(again) is None


def test_unseal_many_keyed_names_the_key_that_opened_each_item() -> None:
    a, b = keypair(0).key, keypair(1).key
    doc = _mixed()
    items = encrypted_items(doc)
    label = sealed_label(doc)
    jobs = [UnsealJob(items[k], label, b.fingerprint) for k in ("user", "password")]
    out = unseal_many_keyed(KeyRegistry([a, b]), jobs, workers=2)
    assert out == [(b"admin", a.fingerprint), (b"new", b.fingerprint)]
    missing = unseal_many_keyed(KeyRegistry([b]), jobs[:1], workers=1)
    assert isinstance(missing[0], DecryptionFailed)


def test_reseal_keeps_items_it_is_not_given() -> None:
    a, b = keypair(0).key, keypair(1).key
    doc = _mixed()
    out = reseal(doc, {"user": b"admin"}, b.public_key, b.fingerprint)
    assert out["spec"]["encryptedData"]["password"] == doc["spec"]["encryptedData"]["password"]
    assert list(out["spec"]["encryptedData"]) == ["user", "password"]
    assert fingerprint_hint(out) == b.fingerprint
    assert _plain(rs.unseal(out, KeyRegistry([b]))) == {"user": b"admin", "password": b"new"}
    assert _plain(rs.unseal(doc, KeyRegistry([a, b]))) == {"user": b"admin", "password": b"new"}


def test_controller_unseals_mixed_and_wrongly_hinted_documents() -> None:
    """The annotation is a hint: missing or wrong, every item still opens (any order)."""
    a, b = keypair(0).key, keypair(1).key
    want = {"user": b"admin", "password": b"new"}
    for keys in ([a, b], [b, a]):
        assert _plain(rs.unseal(_mixed(), KeyRegistry(keys))) == want
    lying = _mixed()
    lying["metadata"]["annotations"] = {api.ANN_KEY_FINGERPRINT: b.fingerprint}
    assert _plain(rs.unseal(lying, KeyRegistry([a, b]))) == want
    lying["metadata"]["annotations"] = {api.ANN_KEY_FINGERPRINT: a.fingerprint}
    assert _plain(rs.unseal(lying, KeyRegistry([a, b]))) == want


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(dump_documents([doc], "yaml"))


def _read(path: Path) -> dict[str, Any]:
    docs, _ = load_documents(path.read_bytes(), str(path))
    return docs[0]


def test_reencrypt_file_attributes_items_by_decryption(tmp_path: Path) -> None:
    """An older secretsync stamped B over A's items: the annotation lies, the items decide."""
    a, b = keypair(0).key, keypair(1).key
    path = tmp_path / "s.yaml"
    stranded = _mixed()
    stranded["metadata"]["annotations"] = {api.ANN_KEY_FINGERPRINT: b.fingerprint}
    for registry in (KeyRegistry([a, b]), KeyRegistry([a])):  # new key held, or not
        _write(path, stranded)
        result = reencrypt_file(str(path), registry, b.public_key, b.fingerprint)
        assert (result.error, result.resealed, result.current) == (None, 1, 0)
        after = _read(path)
        assert fingerprint_hint(after) == b.fingerprint
        # the item on B keeps its ciphertext; A's item moved to B
        kept = stranded["spec"]["encryptedData"]["password"]
        assert after["spec"]["encryptedData"]["password"] == kept
        assert _plain(rs.unseal(after, KeyRegistry([b]))) == {"user": b"admin", "password": b"new"}
        again = reencrypt_file(str(path), registry, b.public_key, b.fingerprint)
        assert (again.error, again.resealed, again.current) == (None, 0, 1)
        assert _read(path) == after


def test_reencrypt_file_without_the_new_key_refuses_items_it_cannot_place(tmp_path: Path) -> None:
    """No annotation and an item no given key opens: it may be on the new key or nowhere --
    the file is left untouched and the error says how to decide."""
    a, b = keypair(0).key, keypair(1).key
    path = tmp_path / "s.yaml"
    _write(path, _mixed())
    before = path.read_bytes()
    result = reencrypt_file(str(path), KeyRegistry([a]), b.public_key, b.fingerprint)
    assert result.error is not None and "--private-key" in result.error
    assert "spec.encryptedData.password" in result.error
    assert path.read_bytes() == before
