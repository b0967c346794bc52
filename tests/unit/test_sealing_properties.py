"""Property-based: arbitrary input to the unseal side only ever raises the typed errors, and
sealing round-trips any value under any label."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secretsync.crypto.format import seal_item, unseal_item
from secretsync.documents import load_documents
from secretsync.errors import CiphertextTooShort, CryptoError, DecryptionFailed, InvalidInput
from secretsync.keys import KeyRegistry, load_private_keys
from secretsync.sealing import decode_item, encrypted_items, sealed_label
from tests.keypairs import keypair

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=1200), st.binary(max_size=40))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes, label: bytes) -> None:
    k = keypair(0).key
    try:
        unseal_item(k.private_key, data, label)
    except (CiphertextTooShort, DecryptionFailed):
        return
    raise AssertionError("arbitrary bytes decrypted")  # pragma: no cover


@SETTINGS
@given(st.binary(min_size=0, max_size=600), st.binary(max_size=64))
def test_well_framed_garbage_raises_only_typed_errors(body: bytes, tail: bytes) -> None:
    """A correct 512-byte length prefix, random RSA block and GCM part: reaches RSA/AES."""
    k = keypair(0).key
    rsa_block = (body * (512 // max(len(body), 1) + 1))[:512] if body else b"\xff" * 512
    data = struct.pack(">H", 512) + rsa_block + tail
    try:
        KeyRegistry([k]).decrypt(data, b"ns/n")
    except (CiphertextTooShort, DecryptionFailed):
        return
    raise AssertionError("garbage decrypted")  # pragma: no cover


@SETTINGS
@given(st.integers(min_value=0, max_value=(1 << 16) - 1), st.binary(max_size=700))
def test_any_length_prefix(prefix: int, rest: bytes) -> None:
    k = keypair(0).key
    try:
        unseal_item(k.private_key, struct.pack(">H", prefix) + rest, b"")
    except (CiphertextTooShort, DecryptionFailed):
        return
    raise AssertionError("garbage decrypted")  # pragma: no cover


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=300))
def test_round_trip_any_value_any_label(value: bytes, label: bytes) -> None:
    k = keypair(0).key
    assert unseal_item(k.private_key, seal_item(k.public_key, value, label), label) == value


@SETTINGS
@given(st.one_of(st.text(max_size=200), st.integers(), st.none(), st.binary(max_size=50)))
def test_decode_item_typed(value: object) -> None:
    try:
        decode_item(value, "spec.encryptedData.x")
    except (CryptoError, InvalidInput):
        pass


@SETTINGS
@given(st.text(max_size=400))
def test_manifest_text_raises_only_invalid_input(text: str) -> None:
    try:
        docs, _ = load_documents(text, "t")
    except InvalidInput:
        return
    for doc in docs:
        try:
            sealed_label(doc)
            encrypted_items(doc)
        except (InvalidInput, CryptoError):
            pass


@SETTINGS
@given(st.binary(max_size=400))
def test_key_files_raise_only_typed_errors(data: bytes) -> None:
    try:
        load_private_keys(data, "k")
    except (InvalidInput, CryptoError):
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@SETTINGS
@given(
    metadata=st.one_of(
        _json,
        st.fixed_dictionaries(
            {"name": _json, "namespace": _json},
            optional={
                "annotations": st.dictionaries(
                    st.sampled_from(
                        ["secretsync.io/scope", "sealedsecrets.bitnami.com/cluster-wide"]
                    ),
                    _json,
                )
            },
        ),
    ),
    spec=st.one_of(_json, st.fixed_dictionaries({"encryptedData": _json, "template": _json})),
)
def test_sealed_secret_shaped_garbage_raises_only_typed_errors(
    metadata: object, spec: object
) -> None:
    from secretsync.sealing import secret_from_items

    doc = {
        "apiVersion": "secretsync.io/v1alpha1",
        "kind": "SealedSecret",
        "metadata": metadata,
        "spec": spec,
    }
    try:
        sealed_label(doc)
        encrypted_items(doc)
        secret_from_items(doc, {})
    except (InvalidInput, CryptoError):
        pass
