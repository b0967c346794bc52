"""The per-item sealing format and key material: round trips, scope binding, tampering."""

from __future__ import annotations

import base64
import hashlib
import struct
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secretsync.crypto import pem
from secretsync.crypto.format import scope_label, seal_item, split_item, unseal_item
from secretsync.errors import CiphertextTooShort, DecryptionFailed, InvalidInput, KeyError_
from tests.keypairs import keypair

SCOPES = [
    ("strict", "ns", "name", b"ns/name"),
    ("namespace-wide", "ns", "name", b"ns"),
    ("cluster-wide", "ns", "name", b""),
]


@pytest.mark.parametrize(("scope", "ns", "name", "expected"), SCOPES)
def test_scope_label(scope: str, ns: str, name: str, expected: bytes) -> None:
    assert scope_label(scope, ns, name) == expected


def test_scope_label_rejects_missing_parts() -> None:
    with pytest.raises(InvalidInput):
        scope_label("strict", "", "name")
    with pytest.raises(InvalidInput):
        scope_label("strict", "ns", "")
    with pytest.raises(InvalidInput):
        scope_label("namespace-wide", "", "x")
    with pytest.raises(InvalidInput):
        scope_label("global", "ns", "x")
    assert scope_label("cluster-wide", "", "") == b""


@pytest.mark.parametrize(("scope", "ns", "name", "label"), SCOPES)
def test_round_trip_each_scope(scope: str, ns: str, name: str, label: bytes) -> None:
    k = keypair(0).key
    for value in (b"", b"hunter2", bytes(range(256)) * 40):
        sealed = seal_item(k.public_key, value, scope_label(scope, ns, name))
        # 0x0200 length prefix (512-byte RSA-4096 block): "Ag" then A-D
        assert base64.b64encode(sealed)[:3] in (b"AgA", b"AgB", b"AgC", b"AgD")
        assert unseal_item(k.private_key, sealed, label) == value


def test_layout_is_bitnamis() -> None:
    """len16 || RSA-OAEP(session key) || AES-256-GCM(zero nonce) ciphertext+tag."""
    k = keypair(0).key
    session = bytes(range(32))
    sealed = seal_item(k.public_key, b"value", b"ns/n", randbytes=lambda n: session[:n])
    (rsa_len,) = struct.unpack(">H", sealed[:2])
    assert rsa_len == 512
    rsa_ct, aes_ct = split_item(sealed)
    assert len(rsa_ct) == 512
    assert aes_ct == AESGCM(session).encrypt(b"\0" * 12, b"value", None)
    assert len(aes_ct) == len(b"value") + 16


@pytest.mark.parametrize(
    ("sealed_with", "opened_with"),
    [
        (b"ns/name", b"ns"),  # strict item under namespace-wide
        (b"ns/name", b""),  # strict item under cluster-wide
        (b"ns", b"ns/name"),  # namespace-wide item as strict
        (b"ns", b""),
        (b"", b"ns"),  # cluster-wide item under namespace-wide
        (b"ns/name", b"other/name"),  # other namespace
        (b"ns/name", b"ns/other"),  # other name
        (b"ns", b"other"),
    ],
)
def test_cross_scope_and_namespace_rejected(sealed_with: bytes, opened_with: bytes) -> None:
    k = keypair(0).key
    sealed = seal_item(k.public_key, b"secret", sealed_with)
    with pytest.raises(DecryptionFailed) as info:
        unseal_item(k.private_key, sealed, opened_with)
    assert b"secret" not in str(info.value).encode()


def test_wrong_key_rejected() -> None:
    sealed = seal_item(keypair(0).key.public_key, b"secret", b"")
    with pytest.raises(DecryptionFailed):
        unseal_item(keypair(1).key.private_key, sealed, b"")


def test_key_size_mismatch_rejected() -> None:
    sealed = seal_item(keypair(2, 2048).key.public_key, b"secret", b"")
    with pytest.raises(DecryptionFailed, match="key size"):
        unseal_item(keypair(0).key.private_key, sealed, b"")


@pytest.mark.parametrize("where", [0, 1, 2, 100, 513, 514, -17, -1])
def test_tampering_detected(where: int) -> None:
    k = keypair(0).key
    sealed = bytearray(seal_item(k.public_key, b"some secret value", b"ns/n"))
    sealed[where] ^= 0x01
    with pytest.raises((DecryptionFailed, CiphertextTooShort)):
        unseal_item(k.private_key, bytes(sealed), b"ns/n")


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 100, 513, 514, 529, -1])
def test_truncation_detected(cut: int) -> None:
    k = keypair(0).key
    sealed = seal_item(k.public_key, b"some secret value", b"ns/n")
    with pytest.raises((CiphertextTooShort, DecryptionFailed)):
        unseal_item(k.private_key, sealed[:cut], b"ns/n")


def test_truncated_below_header_is_too_short() -> None:
    k = keypair(0).key
    sealed = seal_item(k.public_key, b"x", b"")
    for cut in (0, 1, 2, 300, 2 + 512 + 15):
        with pytest.raises(CiphertextTooShort):
            unseal_item(k.private_key, sealed[:cut], b"")


# --- key material ----------------------------------------------------------------------------


def test_fingerprint_is_sha256_of_der_spki() -> None:
    kf = keypair(0)
    der = kf.key.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pem.fingerprint(kf.key.public_key) == hashlib.sha256(der).hexdigest()
    # independent check with openssl: public key out of the certificate, DER, sha256
    spki = subprocess.run(
        ["openssl", "x509", "-in", str(kf.cert_path), "-noout", "-pubkey"],
        check=True,
        capture_output=True,
    ).stdout
    der2 = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"],
        input=spki,
        check=True,
        capture_output=True,
    ).stdout
    assert hashlib.sha256(der2).hexdigest() == kf.fingerprint


def test_generated_key_and_cert() -> None:
    kf = keypair(0)
    assert kf.key.private_key.key_size == 4096
    assert kf.key_path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    cert = pem.load_certificate_pem(kf.cert_path.read_bytes())
    assert pem.fingerprint(cert.public_key()) == kf.fingerprint  # type: ignore[arg-type]
    assert cert.not_valid_before_utc == kf.key.created
    with pytest.raises(KeyError_):
        pem.generate_private_key(1024)


def test_pem_loaders() -> None:
    k = keypair(0).key.private_key
    pkcs8 = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert pem.fingerprint(pem.load_private_key_pem(pkcs8).public_key()) == pem.fingerprint(
        k.public_key()
    )
    spki = k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pkcs1_pub = k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    for data in (spki, pkcs1_pub, keypair(0).cert_path.read_bytes()):
        assert pem.fingerprint(pem.load_public_key_pem(data)) == pem.fingerprint(k.public_key())

    encrypted = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(KeyError_, match="passphrase"):
        pem.load_private_key_pem(encrypted)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyError_, match="not an RSA key"):
        pem.load_private_key_pem(ec_pem)
    with pytest.raises(KeyError_, match="private key"):
        pem.load_public_key_pem(pem.private_key_to_pem(k))
    for junk in (b"", b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(KeyError_):
            pem.load_public_key_pem(junk)
        with pytest.raises(KeyError_):
            pem.load_private_key_pem(junk)
