"""The per-item hybrid sealing format, byte-compatible with Bitnami Sealed Secrets.

Layout of one sealed item (before base64)::

    uint16 big-endian len(rsa_ct) || rsa_ct || aes_gcm_ct_with_tag

``rsa_ct`` is a fresh 32-byte AES-256 session key under RSA-OAEP (SHA-256 for the hash and
MGF1) with the OAEP *label* binding the scope; the value is AES-256-GCM under that session
key with a 12-byte all-zero nonce and no AAD. The zero nonce is safe because every session
key encrypts exactly one message: GCM's (key, nonce) pair is never reused.

Pure functions: randomness is injectable and errors are typed, so tests can pin outputs and
hypothesis can throw arbitrary bytes at ``unseal_item``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secretsync.errors import CiphertextTooShort, DecryptionFailed, InvalidInput

SESSION_KEY_BYTES = 32
_ZERO_NONCE = b"\x00" * 12
_GCM_TAG_BYTES = 16


def scope_label(scope: str, namespace: str, name: str) -> bytes:
    """The OAEP label for a scope: strict binds namespace and name, namespace-wide the
    namespace only, cluster-wide nothing."""
    if scope == "strict":
        if not namespace or not name:
            raise InvalidInput("strict scope needs both a namespace and a name")
        return f"{namespace}/{name}".encode()
    if scope == "namespace-wide":
        if not namespace:
            raise InvalidInput("namespace-wide scope needs a namespace")
        return namespace.encode()
    if scope == "cluster-wide":
        return b""
    raise InvalidInput("unknown scope (use strict, namespace-wide or cluster-wide)")


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()),
        algorithm=hashes.SHA256(),
        label=label or None,
    )


def seal_item(
    public_key: rsa.RSAPublicKey,
    plaintext: bytes,
    label: bytes,
    *,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """Encrypt one value; returns the raw (not base64) sealed bytes."""
    session_key = randbytes(SESSION_KEY_BYTES)
    rsa_ct = public_key.encrypt(session_key, _oaep(label))
    aes_ct = AESGCM(session_key).encrypt(_ZERO_NONCE, plaintext, None)
    return struct.pack(">H", len(rsa_ct)) + rsa_ct + aes_ct


def split_item(sealed: bytes) -> tuple[bytes, bytes]:
    """Split raw sealed bytes into (rsa_ct, aes_ct); raises CiphertextTooShort."""
    if len(sealed) < 2:
        raise CiphertextTooShort("sealed item is too short to hold a key length")
    (rsa_len,) = struct.unpack(">H", sealed[:2])
    if len(sealed) < 2 + rsa_len + _GCM_TAG_BYTES:
        raise CiphertextTooShort("sealed item is truncated")
    return sealed[2 : 2 + rsa_len], sealed[2 + rsa_len :]


def unseal_item(private_key: rsa.RSAPrivateKey, sealed: bytes, label: bytes) -> bytes:
    """Decrypt one raw sealed item with one key.

    Raises ``CiphertextTooShort`` for truncated input and ``DecryptionFailed`` when the key,
    the scope label or the ciphertext does not match (tampering included). The messages never
    include any part of the input.
    """
    rsa_ct, aes_ct = split_item(sealed)
    if len(rsa_ct) != (private_key.key_size + 7) // 8:
        raise DecryptionFailed("sealed item was not made for this key (key size differs)")
    try:
        session_key = private_key.decrypt(rsa_ct, _oaep(label))
    except ValueError as exc:
        raise DecryptionFailed(
            "no key could decrypt the item (wrong key, wrong scope or tampered data)"
        ) from exc
    if len(session_key) != SESSION_KEY_BYTES:
        raise DecryptionFailed("decrypted session key has the wrong length")
    try:
        return AESGCM(session_key).decrypt(_ZERO_NONCE, aes_ct, None)
    except InvalidTag as exc:
        raise DecryptionFailed("sealed item failed its integrity check (tampered data)") from exc
