"""Offline checks on the seal path that ``kubeseal`` does (or the API server would do after
the push): names and namespaces, Secret data keys, certificate dates and bundles, key sizes."""

from __future__ import annotations

import datetime as _dt

import pytest

from secretsync.api import names
from secretsync.crypto import pem
from secretsync.errors import InvalidInput, KeyError_
from secretsync.sealing import seal_secret
from tests.hostile import ca_and_leaf
from tests.hostile import secret_doc as _secret
from tests.keypairs import keypair


@pytest.mark.parametrize(
    ("value", "label", "subdomain"),
    [
        ("db", True, True),
        ("db-1.prod", False, True),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        ("a" * 253, False, True),
        ("a" * 254, False, False),
        ("DB", False, False),
        ("db_1", False, False),
        ("-db", False, False),
        ("db-", False, False),
        ("db..x", False, False),
        ("a/b", False, False),
        ("", False, False),
    ],
)
def test_dns_rules(value: str, label: bool, subdomain: bool) -> None:
    assert names.is_dns_label(value) is label
    assert names.is_dns_subdomain(value) is subdomain


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("password", True),
        (".dockerconfigjson", True),
        ("tls.crt", True),
        ("A_b-c.d", True),
        ("k" * 253, True),
        ("k" * 254, False),
        ("a/b", False),
        (".", False),
        ("..", False),
        ("..x", False),
        ("a b", False),
        ("", False),
        ("ключ", False),
    ],
)
def test_secret_key_rule(key: str, ok: bool) -> None:
    assert names.is_secret_key(key) is ok




@pytest.mark.parametrize(
    ("doc", "default_ns", "needle"),
    [
        (_secret(stringData={"a/b": "pw"}), None, "stringData.a/b: not a valid Secret key"),
        (_secret(data={"..": "cHc="}), None, "data...: not a valid Secret key"),
        (_secret(stringData={"a b!": "pw"}), None, "stringData[a key not shown]: not a valid"),
        (_secret(stringData={None: "pw"}), None, "stringData has a key that is not a string"),
        (_secret(metadata={"name": "My_DB", "namespace": "app"}), None, "metadata.name is not"),
        (_secret(metadata={"name": "db", "namespace": "App"}), None, "metadata.namespace is not"),
        (_secret(metadata={"name": "db"}), "a.b", "-n/--namespace is not a valid namespace"),
    ],
)
def test_seal_refuses_what_the_api_server_would(
    doc: dict[str, object], default_ns: str | None, needle: str
) -> None:
    key = keypair(0).key
    with pytest.raises(InvalidInput, match=needle.replace(".", r"\.").replace("[", r"\[")):
        seal_secret(doc, key.public_key, key.fingerprint, default_namespace=default_ns)


def test_seal_accepts_valid_names_and_int_keys() -> None:
    key = keypair(0).key
    doc = _secret(metadata={"name": "db-1.prod"}, stringData={"a.b_C-d": "x", 1: "y"})
    out = seal_secret(doc, key.public_key, key.fingerprint, default_namespace="app")
    assert set(out["spec"]["encryptedData"]) == {"a.b_C-d", "1"}


# --- certificates --------------------------------------------------------------------------


def test_bundle_uses_the_leaf_not_a_ca_that_comes_first() -> None:
    ca, leaf, _ = ca_and_leaf()
    for bundle in (ca, leaf), (leaf, ca):
        data = b"".join(pem.certificate_to_pem(c) for c in bundle)
        key, cert = pem.load_public_key_and_certificate(data)
        assert cert == leaf
        assert pem.fingerprint(key) == keypair(0).fingerprint


def test_bundle_without_a_single_leaf_is_refused() -> None:
    ca, _, _ = ca_and_leaf()
    other, _, _ = ca_and_leaf()  # a second, unrelated CA
    data = pem.certificate_to_pem(ca) + pem.certificate_to_pem(other)
    with pytest.raises(KeyError_, match="2 certificates and no single leaf"):
        pem.load_public_key_pem(data)
    # two unrelated self-signed certificates, one of them not a CA: that one
    mine = keypair(0).key.certificate
    assert mine is not None
    _, cert = pem.load_public_key_and_certificate(
        data[: len(data) // 2] + pem.certificate_to_pem(mine)
    )
    assert cert == mine


def test_validity_problem() -> None:
    key = keypair(0).key.private_key
    now = _dt.datetime(2030, 6, 1, tzinfo=_dt.UTC)
    cert = pem.self_signed_certificate(key, now=now, days=10)
    assert pem.validity_problem(cert, now) is None
    assert pem.validity_problem(cert, now + _dt.timedelta(days=9)) is None
    assert "expired on 2030-06-11" in str(pem.validity_problem(cert, now + _dt.timedelta(days=11)))
    assert "not valid before 2030-06-01" in str(
        pem.validity_problem(cert, now - _dt.timedelta(hours=1))
    )
    # a clock a little behind the machine that made the certificate is tolerated
    assert pem.validity_problem(cert, now - _dt.timedelta(minutes=1)) is None


def test_key_and_certificate_bounds() -> None:
    key = keypair(0).key.private_key
    with pytest.raises(KeyError_, match="too large"):
        pem.generate_private_key(pem.MAX_KEY_BITS + 8)
    for days in (0, pem.MAX_CERT_DAYS + 1, 99_999_999):
        with pytest.raises(KeyError_, match="validity must be 1 to"):
            pem.self_signed_certificate(key, days=days)
    for cn in ("", "x" * 65):
        with pytest.raises(KeyError_, match="common name must be 1 to 64"):
            pem.self_signed_certificate(key, common_name=cn)
    assert pem.self_signed_certificate(key, days=pem.MAX_CERT_DAYS).not_valid_after_utc.year > 2100
