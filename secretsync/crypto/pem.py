"""Key material: RSA key generation, self-signed certificates, PEM in and out, fingerprints.

The sealing format needs an RSA public key to seal and the matching private key to unseal.
Keys travel as PEM: private keys in PKCS#1 (what Bitnami writes to ``tls.key``; PKCS#8 is
read too), public keys as a self-signed X.509 certificate (``tls.crt`` / ``cert.pem``) or a
bare ``PUBLIC KEY`` block. The fingerprint -- SHA-256 hex of the DER SubjectPublicKeyInfo --
names a key everywhere (annotations, registry, CLI output) without revealing anything.

Bytes in, bytes out; no Kubernetes, no files (the callers read and write those).
"""

from __future__ import annotations

import datetime as _dt
import hashlib

from cryptography import x509

# The enums live in ``_serialization``, which ``cryptography.x509`` loads anyway; the public
# ``serialization`` package also loads the SSH codecs (~2 ms), so the loaders that need it
# import it lazily -- ``secretsync seal`` starts faster.
from cryptography.hazmat.primitives import _serialization as _ser
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from secretsync.errors import KeyError_

DEFAULT_KEY_BITS = 4096
MIN_KEY_BITS = 2048
MAX_KEY_BITS = 16384  # beyond, generation takes hours and every unseal seconds
DEFAULT_CERT_DAYS = 3650  # the certificate only carries the public key; its expiry is advisory
MAX_CERT_DAYS = 36500  # a century; X.509 dates end in year 9999
DEFAULT_COMMON_NAME = "secretsync"
MAX_COMMON_NAME = 64  # X.520 ub-common-name
# a certificate made a moment ago on a machine whose clock runs ahead is not "not yet valid"
CLOCK_SKEW = _dt.timedelta(minutes=5)

_PRIVATE_MARKERS = (b"-----BEGIN RSA PRIVATE KEY-----", b"-----BEGIN PRIVATE KEY-----")
_ENCRYPTED_MARKER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
_PUBLIC_MARKERS = (b"-----BEGIN PUBLIC KEY-----", b"-----BEGIN RSA PUBLIC KEY-----")


def generate_private_key(bits: int = DEFAULT_KEY_BITS) -> rsa.RSAPrivateKey:
    """A fresh RSA key (public exponent 65537). RSA-4096 takes ~0.4 s, sometimes over 1 s."""
    if bits < MIN_KEY_BITS:
        raise KeyError_(f"key size {bits} is too small; use at least {MIN_KEY_BITS} bits")
    if bits > MAX_KEY_BITS:
        raise KeyError_(f"key size {bits} is too large; use at most {MAX_KEY_BITS} bits")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def self_signed_certificate(
    key: rsa.RSAPrivateKey,
    *,
    common_name: str = DEFAULT_COMMON_NAME,
    days: int = DEFAULT_CERT_DAYS,
    now: _dt.datetime | None = None,
) -> x509.Certificate:
    """A self-signed certificate that carries ``key``'s public half (what ``seal`` needs).

    ``not_valid_before`` is the key's creation time: the registry orders keys by it.
    """
    if not 1 <= days <= MAX_CERT_DAYS:
        raise KeyError_(f"certificate validity must be 1 to {MAX_CERT_DAYS} days")
    if not 1 <= len(common_name) <= MAX_COMMON_NAME:
        raise KeyError_(f"the common name must be 1 to {MAX_COMMON_NAME} characters")
    start = (now or _dt.datetime.now(_dt.UTC)).replace(microsecond=0)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secretsync"),
        ]
    )
    serial = x509.random_serial_number()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


# --- PEM out -------------------------------------------------------------------------------


def private_key_to_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#1 (``RSA PRIVATE KEY``), unencrypted: the layout Bitnami and kubeseal use."""
    return key.private_bytes(
        _ser.Encoding.PEM,
        _ser.PrivateFormat.TraditionalOpenSSL,
        _ser.NoEncryption(),
    )


def certificate_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(_ser.Encoding.PEM)


# --- PEM in --------------------------------------------------------------------------------


def _require_rsa_private(key: object) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyError_("the private key is not an RSA key (sealing keys are RSA)")
    return key


def _require_rsa_public(key: object) -> rsa.RSAPublicKey:
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyError_("the public key is not an RSA key (sealing keys are RSA)")
    return key


def is_private_key_pem(data: bytes) -> bool:
    return any(marker in data for marker in (*_PRIVATE_MARKERS, _ENCRYPTED_MARKER))


def is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data


def load_private_key_pem(data: bytes, *, validate: bool = True) -> rsa.RSAPrivateKey:
    """One RSA private key from PEM (PKCS#1 or PKCS#8, unencrypted).

    ``validate=False`` skips OpenSSL's RSA consistency check (~0.2 s per 4096-bit key, holding
    the GIL). Only for keys that were validated when they entered the store -- the controller
    reloading the key Secrets it generated or that were imported through a validating path."""
    if _ENCRYPTED_MARKER in data:
        raise KeyError_("the private key is passphrase-protected; decrypt it first")
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=not validate
        )
    except (ValueError, TypeError) as exc:
        raise KeyError_("not a readable PEM private key") from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and friends
        raise KeyError_(f"not a usable PEM private key ({type(exc).__name__})") from exc
    return _require_rsa_private(key)


def load_certificate_pem(data: bytes) -> x509.Certificate:
    """The first certificate of a PEM bundle."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise KeyError_("not a readable PEM certificate") from exc


def leaf_certificate(data: bytes) -> x509.Certificate:
    """The leaf of a PEM bundle: the certificate no other one in the bundle was issued by
    (a CA certificate that happens to come first must not be sealed to -- kubeseal takes
    the first). Among several candidates, the only one that is not a CA; else an error."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyError_("not a readable PEM certificate") from exc
    if len(certs) == 1:
        return certs[0]
    issuers = {c.issuer for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject not in issuers]
    if len(leaves) > 1:
        leaves = [c for c in leaves if not _is_ca(c)]
    if len(leaves) != 1:
        raise KeyError_(
            f"the PEM bundle holds {len(certs)} certificates and no single leaf; "
            "give the controller's certificate alone"
        )
    return leaves[0]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def validity_problem(cert: x509.Certificate, now: _dt.datetime | None = None) -> str | None:
    """Why ``cert`` is not valid at ``now`` (expired, or not yet valid beyond a few minutes
    of clock skew), or None. Sealing refuses such a certificate (kubeseal refuses expired
    ones); unsealing ignores the dates, which say nothing about the key's secrecy."""
    at = now or _dt.datetime.now(_dt.UTC)
    if at + CLOCK_SKEW < cert.not_valid_before_utc:
        return f"the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if at > cert.not_valid_after_utc:
        return f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


def load_public_key_pem(data: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from a certificate (the leaf of a bundle) or a ``PUBLIC KEY``/``RSA
    PUBLIC KEY`` PEM block. The certificate's dates are not checked here (see
    ``validity_problem``)."""
    return load_public_key_and_certificate(data)[0]


def load_public_key_and_certificate(
    data: bytes,
) -> tuple[rsa.RSAPublicKey, x509.Certificate | None]:
    """``load_public_key_pem``, and the certificate it came from (None for a bare key)."""
    if _CERT_MARKER in data:
        cert = leaf_certificate(data)
        return _require_rsa_public(cert.public_key()), cert
    if any(marker in data for marker in _PUBLIC_MARKERS):
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise KeyError_("not a readable PEM public key") from exc
        except Exception as exc:  # UnsupportedAlgorithm
            raise KeyError_(f"not a usable PEM public key ({type(exc).__name__})") from exc
        return _require_rsa_public(key), None
    if is_private_key_pem(data):
        raise KeyError_("this is a private key; give the certificate (public key) to seal")
    raise KeyError_("no PEM certificate or public key found")


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """SHA-256 hex of the DER SubjectPublicKeyInfo (same as ``openssl pkey -pubout -outform
    DER | sha256sum``)."""
    der = public_key.public_bytes(_ser.Encoding.DER, _ser.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()
