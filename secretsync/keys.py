"""Sealing keys: loading them, keeping them, and unsealing with them.

- Loaders for what people have on disk: PEM private keys, certificates and public keys, and
  kubectl-exported key Secrets (one Secret or a ``List``, YAML or JSON, ``tls.key``/``tls.crt``
  -- Bitnami's backups work as they are).
- ``KeyRegistry``: fingerprint -> private key, the newest key, and ``decrypt`` that tries the
  key named by the SealedSecret's fingerprint annotation first and the others newest-first --
  Bitnami tries every key on every item, whose cost grows with each renewal.
- ``secret_body_for_key`` / ``key_from_secret``: a key as a ``kubernetes.io/tls`` Secret dict
  (the controller persists keys this way before using them) and back.
- ``unseal_many``: many items on a thread pool; ``cryptography`` releases the GIL during RSA,
  so unsealing uses every core. ``unseal_many_keyed`` also says which key opened each item.

Plain dicts and bytes only: no Kubernetes client here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from secretsync.api import BITNAMI_LABEL_SEALING_KEY, LABEL_SEALING_KEY
from secretsync.cores import usable_cores
from secretsync.crypto import pem
from secretsync.crypto.format import split_item, unseal_item
from secretsync.documents import describe, load_documents
from secretsync.errors import CryptoError, DecryptionFailed, InvalidInput, KeyError_

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
TLS_SECRET_TYPE = "kubernetes.io/tls"
ACTIVE = "active"
COMPROMISED = "compromised"
_T = TypeVar("_T")


@dataclass(frozen=True)
class SealingKey:
    """One RSA keypair. ``created`` orders keys (newest seals); ``name`` is the Secret's."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate | None = field(default=None, repr=False)
    created: _dt.datetime = _EPOCH
    name: str | None = None
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", pem.fingerprint(self.private_key.public_key()))

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @classmethod
    def from_private_key(
        cls,
        private_key: rsa.RSAPrivateKey,
        certificate: x509.Certificate | None = None,
        *,
        created: _dt.datetime | None = None,
        name: str | None = None,
    ) -> SealingKey:
        if certificate is not None:
            cert_fp = pem.fingerprint(_rsa_public(certificate))
            if cert_fp != pem.fingerprint(private_key.public_key()):
                raise KeyError_("the certificate does not belong to the private key")
        when = created or (certificate.not_valid_before_utc if certificate else None) or _EPOCH
        return cls(private_key, certificate, when, name)

    @classmethod
    def generate(
        cls, bits: int = pem.DEFAULT_KEY_BITS, *, now: _dt.datetime | None = None
    ) -> SealingKey:
        """A new RSA key and its self-signed certificate; ``created`` is the certificate's
        ``not_valid_before``."""
        key = pem.generate_private_key(bits)
        cert = pem.self_signed_certificate(key, now=now)
        return cls.from_private_key(key, cert)


def _rsa_public(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyError_("the certificate does not carry an RSA public key")
    return key


# --- kubernetes.io/tls Secret <-> key -----------------------------------------------------


def secret_name_for_key(key: SealingKey, prefix: str = "secretsync-key-") -> str:
    """A deterministic name, so persisting the same key twice is idempotent."""
    return f"{prefix}{key.fingerprint[:16]}"


def secret_body_for_key(
    key: SealingKey,
    *,
    namespace: str,
    name: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret dict holding the key, labelled
    ``secretsync.io/sealing-key=active`` (the certificate is made if the key has none)."""
    cert = key.certificate or pem.self_signed_certificate(key.private_key, now=key.created)
    all_labels = {LABEL_SEALING_KEY: ACTIVE, **(labels or {})}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name or key.name or secret_name_for_key(key),
            "namespace": namespace,
            "labels": all_labels,
        },
        "type": TLS_SECRET_TYPE,
        "data": {
            "tls.crt": base64.b64encode(pem.certificate_to_pem(cert)).decode("ascii"),
            "tls.key": base64.b64encode(pem.private_key_to_pem(key.private_key)).decode("ascii"),
        },
    }


def _parse_timestamp(value: object) -> _dt.datetime | None:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, str) and value:
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def key_from_secret(secret: dict[str, Any], *, validate: bool = True) -> SealingKey:
    """The key held by a ``tls.key``/``tls.crt`` Secret dict (ours or Bitnami's).

    ``created`` is the certificate's ``not_valid_before`` (intrinsic to the key, survives
    export/import into another cluster), else the Secret's ``creationTimestamp``.
    """
    what = describe(secret)
    data = secret.get("data")
    string_data = secret.get("stringData")
    raw: dict[str, bytes] = {}
    if isinstance(data, dict):
        for k in ("tls.key", "tls.crt"):
            v = data.get(k)
            if isinstance(v, str):
                try:
                    raw[k] = base64.b64decode(v, validate=True)
                except (binascii.Error, ValueError):
                    raise KeyError_(f"{what}: data.{k} is not valid base64") from None
    if isinstance(string_data, dict):
        for k in ("tls.key", "tls.crt"):
            v = string_data.get(k)
            if isinstance(v, str):
                raw[k] = v.encode()
    if "tls.key" not in raw:
        raise KeyError_(f"{what}: no tls.key in the Secret")
    try:
        private_key = pem.load_private_key_pem(raw["tls.key"], validate=validate)
        cert = pem.load_certificate_pem(raw["tls.crt"]) if "tls.crt" in raw else None
        meta = secret.get("metadata") or {}
        created = cert.not_valid_before_utc if cert is not None else None
        if created is None and isinstance(meta, dict):
            created = _parse_timestamp(meta.get("creationTimestamp"))
        name = meta.get("name") if isinstance(meta, dict) else None
        return SealingKey.from_private_key(
            private_key, cert, created=created, name=name if isinstance(name, str) else None
        )
    except KeyError_ as exc:
        raise KeyError_(f"{what}: {exc.message}") from exc


def is_compromised(secret: dict[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return COMPROMISED in (labels.get(LABEL_SEALING_KEY), labels.get(BITNAMI_LABEL_SEALING_KEY))


# --- files people have ---------------------------------------------------------------------


def load_private_keys(data: bytes, source: str) -> list[SealingKey]:
    """Private keys from a PEM file (any number of key blocks, plus optionally the
    certificate) or a kubectl-exported Secret / List of Secrets (YAML or JSON)."""
    if pem.is_pem(data) and pem.is_private_key_pem(data):
        try:
            return _keys_from_pem_bundle(data)
        except KeyError_ as exc:
            raise KeyError_(f"{source}: {exc.message}") from exc
    if pem.is_pem(data):
        raise KeyError_(f"{source}: holds no private key (a certificate is the public half)")
    try:
        docs, _ = load_documents(data, source)
    except InvalidInput as exc:
        why = exc.message.removeprefix(f"{source}: ")  # what the YAML/JSON loader refused
        raise KeyError_(f"{source}: neither a PEM private key nor a key Secret ({why})") from exc
    keys = [key_from_secret(d) for d in docs if d.get("kind") == "Secret"]
    if not keys:
        raise KeyError_(f"{source}: no PEM private key and no Secret with tls.key found")
    return keys


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks, start = [], 0
    while (begin := data.find(b"-----BEGIN ", start)) != -1:
        end_marker = data.find(b"-----END ", begin)
        if end_marker == -1:
            break
        end = data.find(b"-----", end_marker + 9)
        if end == -1:
            break
        blocks.append(data[begin : end + 5] + b"\n")
        start = end + 5
    return blocks


def _keys_from_pem_bundle(data: bytes) -> list[SealingKey]:
    private = [b for b in _pem_blocks(data) if pem.is_private_key_pem(b)]
    certs = [pem.load_certificate_pem(b) for b in _pem_blocks(data) if b"CERTIFICATE-----" in b]
    by_fp = {pem.fingerprint(_rsa_public(c)): c for c in certs}
    out = []
    for block in private:
        key = pem.load_private_key_pem(block)
        out.append(SealingKey.from_private_key(key, by_fp.get(pem.fingerprint(key.public_key()))))
    return out


def load_public_key(data: bytes, source: str) -> rsa.RSAPublicKey:
    """The public key in a certificate or ``PUBLIC KEY`` PEM (what ``seal --cert`` takes)."""
    try:
        return pem.load_public_key_pem(data)
    except KeyError_ as exc:
        raise KeyError_(f"{source}: {exc.message}") from exc


# --- the registry --------------------------------------------------------------------------


class KeyRegistry:
    """Fingerprint -> key, thread-safe. The controller adds keys as their Secrets appear
    (no restart needed) and seals with ``newest()``."""

    def __init__(self, keys: Iterable[SealingKey] = ()) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, SealingKey] = {}
        self._order: list[SealingKey] = []  # newest first
        for key in keys:
            self.add(key)

    def add(self, key: SealingKey) -> None:
        with self._lock:
            self._keys[key.fingerprint] = key
            self._reorder()

    def remove(self, fingerprint: str) -> None:
        with self._lock:
            self._keys.pop(fingerprint, None)
            self._reorder()

    def _reorder(self) -> None:
        self._order = sorted(
            self._keys.values(), key=lambda k: (k.created, k.fingerprint), reverse=True
        )

    def get(self, fingerprint: str) -> SealingKey | None:
        return self._keys.get(fingerprint)

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[SealingKey]:
        """All keys, newest first."""
        return list(self._order)

    def fingerprints(self) -> list[str]:
        return [k.fingerprint for k in self._order]

    def newest(self) -> SealingKey:
        order = self._order
        if not order:
            raise KeyError_("no sealing key is available")
        return order[0]

    def candidates(self, fingerprint_hint: str | None = None) -> list[SealingKey]:
        """The hinted key first (when we have it), then the others newest-first."""
        order = self._order
        hinted = self._keys.get(fingerprint_hint) if fingerprint_hint else None
        if hinted is None:
            return list(order)
        return [hinted, *(k for k in order if k is not hinted)]

    def decrypt(self, item: bytes, label: bytes, fingerprint_hint: str | None = None) -> bytes:
        """Unseal one raw item. Raises ``CiphertextTooShort`` for malformed input and
        ``DecryptionFailed`` when no key (in this scope) opens it."""
        return self.decrypt_with_key(item, label, fingerprint_hint)[0]

    def decrypt_with_key(
        self, item: bytes, label: bytes, fingerprint_hint: str | None = None
    ) -> tuple[bytes, SealingKey]:
        """``decrypt``, and the key that opened the item. An RSA-OAEP ciphertext names no
        key; only a successful decryption attributes it (``reencrypt`` needs this to tell
        an item sealed to the new key from one a fingerprint annotation merely claims is)."""
        rsa_ct, _ = split_item(item)  # malformed input fails once, not once per key
        candidates = self.candidates(fingerprint_hint)
        if not candidates:
            raise DecryptionFailed("no private key is loaded to decrypt with")
        size = len(rsa_ct) * 8
        tried = 0
        for key in candidates:
            if (key.private_key.key_size + 7) // 8 != len(rsa_ct):
                continue  # made for a key of another size: no RSA operation wasted
            tried += 1
            try:
                return unseal_item(key.private_key, item, label), key
            except DecryptionFailed:
                continue
        if tried == 0:
            raise DecryptionFailed(f"no loaded key has the item's key size ({size} bits)")
        raise DecryptionFailed(
            f"none of {tried} key(s) could decrypt the item "
            "(wrong key, wrong scope/name/namespace, or tampered data)"
        )


# --- many items on every core --------------------------------------------------------------


@dataclass(frozen=True)
class UnsealJob:
    item: bytes
    label: bytes
    fingerprint_hint: str | None = None


def unseal_many(
    registry: KeyRegistry, jobs: Sequence[UnsealJob], *, workers: int | None = None
) -> list[bytes | CryptoError]:
    """Decrypt every job; each result is the plaintext or the ``CryptoError`` for that item.

    Runs on a thread pool of ``workers`` threads (default: the usable cores); RSA decryption
    releases the GIL, so two cores unseal nearly twice as fast as one.
    """

    def one(job: UnsealJob) -> bytes | CryptoError:
        try:
            return registry.decrypt(job.item, job.label, job.fingerprint_hint)
        except CryptoError as exc:
            return exc

    return _on_pool(one, jobs, workers)


def unseal_many_keyed(
    registry: KeyRegistry, jobs: Sequence[UnsealJob], *, workers: int | None = None
) -> list[tuple[bytes, str] | CryptoError]:
    """``unseal_many``, each success paired with the fingerprint of the key that opened it."""

    def one(job: UnsealJob) -> tuple[bytes, str] | CryptoError:
        try:
            value, key = registry.decrypt_with_key(job.item, job.label, job.fingerprint_hint)
        except CryptoError as exc:
            return exc
        return value, key.fingerprint

    return _on_pool(one, jobs, workers)


def _on_pool(
    fn: Callable[[UnsealJob], _T], jobs: Sequence[UnsealJob], workers: int | None
) -> list[_T]:
    n = workers if workers is not None else usable_cores()
    if n <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    from concurrent.futures import ThreadPoolExecutor  # only paid for by the unseal paths

    with ThreadPoolExecutor(max_workers=min(n, len(jobs)), thread_name_prefix="unseal") as pool:
        return list(pool.map(fn, jobs, chunksize=1))
