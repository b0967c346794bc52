"""Template filters for ExternalSecret templates: base64 (std/url), JSON, YAML, PEM filtering,
PKCS#12 in and out — and that a failing filter never echoes the value."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from secretsync.errors import InvalidTemplate
from secretsync.reconcile.template import render_data


def cert_and_key(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert, key


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def one(template: str, **values: bytes) -> bytes:
    return render_data({"out": template}, values)["out"]


def test_base64_json_yaml() -> None:
    assert one("{{ v | b64urlenc }}", v=b"hi?") == b"aGk_"
    assert one("{{ v | b64enc }}", v=b"hi?") == b"aGk/"
    assert one("{{ v | b64urldec }}", v=b"aGk_") == b"hi?"
    assert one("{{ (v | fromYaml).db.port }}", v=b"db:\n  port: 5432\n") == b"5432"
    assert one("{{ (v | fromJson) | toYaml }}", v=b'{"b": 1, "a": [1]}') == b"a:\n- 1\nb: 1\n"
    assert one("{{ v | fromJson | toJson }}", v=b'{"b":1,"a":2}') == b'{"a":2,"b":1}'


def test_filter_pem() -> None:
    c1, k1 = cert_and_key("one")
    c2, _ = cert_and_key("two")
    bundle = (pem(c1) + key_pem(k1) + pem(c2)).encode()
    certs = one("{{ v | filterPEM('CERTIFICATE') }}", v=bundle)
    assert x509.load_pem_x509_certificates(certs) == [c1, c2]
    keys = one("{{ v | filterPEM('PRIVATE KEY') }}", v=bundle)
    assert keys.decode().strip() == key_pem(k1).strip()


@pytest.mark.parametrize("password", ["", "s3cret"])
def test_pkcs12_roundtrip(password: str) -> None:
    leaf, key = cert_and_key("leaf")
    ca, _ = cert_and_key("ca")
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    p12 = base64.b64encode(pkcs12.serialize_key_and_certificates(b"x", key, leaf, [ca], enc))
    arg = f"'{password}'" if password else ""
    got_key = one(f"{{{{ v | pkcs12key({arg}) }}}}", v=p12)
    assert serialization.load_pem_private_key(got_key, None).private_numbers() == (  # type: ignore[union-attr]
        key.private_numbers())
    got_certs = one(f"{{{{ v | pkcs12certPass({arg}) }}}}", v=p12)
    assert x509.load_pem_x509_certificates(got_certs) == [leaf, ca]
    # and back: PEM -> PKCS#12 (base64)
    out = one("{{ crt | pemToPkcs12(key, pw) }}", crt=(pem(leaf) + pem(ca)).encode(),
              key=key_pem(key).encode(), pw=password.encode())
    back = pkcs12.load_pkcs12(base64.b64decode(out), password.encode() or None)
    assert back.cert is not None and back.cert.certificate == leaf
    assert [c.certificate for c in back.additional_certs] == [ca]


def test_failing_filter_does_not_echo_value() -> None:
    with pytest.raises(InvalidTemplate) as info:
        one("{{ v | pkcs12key }}", v=b"c2VjcmV0LXZhbHVlLW5vdC1wMTI=")  # "secret-value-not-p12"
    assert "'out'" in str(info.value)
    assert "secret-value" not in str(info.value) and "c2VjcmV0" not in str(info.value)
    with pytest.raises(InvalidTemplate) as info:
        one("{{ v | filterPEM('CERTIFICATE') }}", v=b"secret-value")
    assert "secret-value" not in str(info.value)
