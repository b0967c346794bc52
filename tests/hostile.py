"""Hostile inputs shared by the unit, CLI and endpoint tests (plain functions, like
``tests/keypairs.py``)."""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.keypairs import keypair


def billion_laughs(field: str = "kind") -> str:
    """The classic: 9 levels of 9 aliases each, ~10^9 strings once expanded (~400 bytes)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join([*lines, f"{field}: *i", ""])


def ca_and_leaf() -> tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    """A CA certificate and a leaf it issued for ``keypair(0)``'s key (and the CA's key)."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = keypair(0).key.private_key
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = _dt.datetime.now(_dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "controller")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    return ca, leaf, ca_key


def secret_doc(**over: object) -> dict[str, object]:
    """A valid Secret document to seal, with top-level fields replaced by ``over``."""
    doc: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "app"},
        "stringData": {"password": "pw"},
    }
    doc.update(over)
    return doc
