"""No input value in any output of a failing command: a marker value -- raw and base64-encoded
-- is put in every field, with the wrong type or in the wrong place, and through every error
path of ``seal``, ``unseal``, ``reencrypt`` and key loading; it must appear in neither stdout
nor stderr. (A valid Kubernetes name in a name field is a name, and is shown: the marker is not
name-shaped, as a real secret rarely is.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Result, Run
from tests.hostile import secret_doc as secret
from tests.keypairs import keypair

MARKER = "S3cr3t_LEAK+marker/value!"
B64 = base64.b64encode(MARKER.encode()).decode()  # valid base64: what data and items hold
NEEDLES = ("LEAK", MARKER, B64, B64.rstrip("="), base64.b64encode(B64.encode()).decode())


def check_no_leak(res: Result, *, fails: bool = True) -> None:
    assert res.rc != 0 or not fails, res
    assert "Traceback" not in res.err and "a bug" not in res.err, res.err
    for needle in NEEDLES:
        assert needle not in res.out and needle not in res.err, (needle, res)




META = {"name": "db", "namespace": "app"}
BAD_SECRETS = {
    f"{label}-{form}": doc
    for form, m in (("raw", MARKER), ("b64", B64))
    for label, doc in {
        "kind-map": secret(kind={"password": m}),
        "kind-str": secret(kind=m),
        "kind-list": secret(kind=[m]),
        "apiVersion-map": secret(apiVersion={"password": m}),
        "apiVersion-str": secret(apiVersion=m),
        "metadata-str": secret(metadata=m),
        "name-map": secret(metadata={"name": {"password": m}, "namespace": "app"}),
        "name-str": secret(metadata={"name": m, "namespace": "app"}),
        "namespace-map": secret(metadata={"name": "db", "namespace": {"p": m}}),
        "namespace-str": secret(metadata={"name": "db", "namespace": m}),
        "labels-str": secret(metadata={**META, "labels": m}),
        "labels-value": secret(metadata={**META, "labels": {"a": {"p": m}}}),
        "annotations-value": secret(metadata={**META, "annotations": {"a": [m]}}),
        "scope": secret(metadata={**META, "annotations": {"secretsync.io/scope": m}}),
        "data-str": secret(data=m),
        "data-value": secret(data={"a": m if form == "raw" else [m]}),
        "data-map": secret(data={"a": {"p": m}}),
        "data-key": secret(data={m: B64}),
        "stringData-str": secret(stringData=m),
        "stringData-value": secret(stringData={"a": {"p": m}}),
        "stringData-list": secret(stringData={"a": [m]}),
        "stringData-key": secret(stringData={m: "x"}),
        "stringData-bad-key": secret(stringData={"a/b": m}),
        "type": secret(type={"p": m}),
        "immutable": secret(immutable=m),
        "bad-name-with-data": secret(metadata={"name": "Bad_Name"}, data={"a": B64}),
        "not-a-mapping": m,
        "list-item": {"apiVersion": "v1", "kind": "List", "items": [m]},
    }.items()
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("case", sorted(BAD_SECRETS))
def test_seal(run: Run, case: str, fmt: str) -> None:
    doc = BAD_SECRETS[case]
    text = json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc)
    check_no_leak(run("seal", "--cert", keypair(0).cert_path, input=text))


def test_seal_merge_into_and_raw(run: Run, tmp_path: Path) -> None:
    cert = keypair(0).cert_path
    target = tmp_path / "sealed.yaml"
    target.write_text(yaml.safe_dump(secret(kind={"p": MARKER})))
    ok = yaml.safe_dump(secret())
    check_no_leak(run("seal", "--cert", cert, "--merge-into", target, input=ok))
    for flags in (["-n", "app"], ["-n", "Bad_NS", "--name", "db"], ["-n", "app", "--name", "B/d"]):
        check_no_leak(run("seal", "--raw", "--cert", cert, *flags, input=MARKER))
    (tmp_path / "cert.pem").write_text(f"{MARKER}\n{B64}\n")
    check_no_leak(run("seal", "--cert", tmp_path / "cert.pem", input=ok))
    pem_junk = f"-----BEGIN CERTIFICATE-----\n{B64}\n-----END CERTIFICATE-----\n"
    (tmp_path / "cert.pem").write_text(pem_junk)
    check_no_leak(run("seal", "--cert", tmp_path / "cert.pem", input=ok))


def _sealed() -> dict[str, object]:
    return {
        "apiVersion": "secretsync.io/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "db", "namespace": "app"},
        "spec": {"encryptedData": {"password": "AgA" + "A" * 700}, "template": {}},
    }


def sealed(**over: object) -> dict[str, object]:
    doc = _sealed()
    doc.update(over)
    return doc


def spec(**over: object) -> dict[str, object]:
    return sealed(spec={"encryptedData": {"password": "AgAA"}, **over})


BAD_SEALED = {
    f"{label}-{form}": doc
    for form, m in (("raw", MARKER), ("b64", B64))
    for label, doc in {
        "kind": sealed(kind={"p": m}),
        "kind-str": sealed(kind=m),
        "apiVersion": sealed(apiVersion=m),
        "name": sealed(metadata={"name": {"p": m}, "namespace": "app"}),
        "scope": sealed(metadata={**META, "annotations": {"secretsync.io/scope": m}}),
        "spec": sealed(spec=m),
        "encryptedData": spec(encryptedData=m),
        "item": spec(encryptedData={"password": m}),
        "item-map": spec(encryptedData={"password": {"p": m}}),
        "item-key": spec(encryptedData={m: "AgAA"}),
        "template": spec(template=m),
        "template-labels": spec(template={"metadata": {"labels": {"a": [m]}}}),
        "legacy-data": sealed(spec={"data": m}),
        "not-a-mapping": m,
    }.items()
}


@pytest.mark.parametrize("case", sorted(BAD_SEALED))
def test_unseal(run: Run, case: str) -> None:
    text = yaml.safe_dump(BAD_SEALED[case])
    check_no_leak(run("unseal", "--private-key", keypair(0).key_path, input=text))


@pytest.mark.parametrize("case", sorted(BAD_SEALED))
def test_reencrypt(run: Run, tmp_path: Path, case: str) -> None:
    path = tmp_path / "tree" / "s.yaml"
    path.parent.mkdir()
    path.write_text("# SealedSecret\n" + yaml.safe_dump(BAD_SEALED[case]))
    res = run(
        "reencrypt", "--private-key", keypair(0).key_path, "--cert", keypair(1).cert_path,
        tmp_path / "tree",
    )  # fmt: skip
    # a document that is not a SealedSecret is no error here: it is skipped, file untouched
    check_no_leak(res, fails=False)
    assert path.read_text() == "# SealedSecret\n" + yaml.safe_dump(BAD_SEALED[case])


def _key_secret(**data: object) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, **data})


KEY_FILES = {
    "pem-junk": f"-----BEGIN RSA PRIVATE KEY-----\n{B64}\n-----END RSA PRIVATE KEY-----\n",
    "text": f"{MARKER}\n",
    "tls.key-raw": _key_secret(data={"tls.key": MARKER}),
    "tls.key-b64": _key_secret(data={"tls.key": B64}),
    "tls.key-map": _key_secret(data={"tls.key": {"p": MARKER}}),
    "tls.crt-b64": _key_secret(
        data={
            "tls.key": base64.b64encode(keypair(0).key_path.read_bytes()).decode(),
            "tls.crt": B64,
        }
    ),
    "stringData": _key_secret(stringData={"tls.key": MARKER}),
    "kind": yaml.safe_dump({"kind": {"p": MARKER}}),
}


@pytest.mark.parametrize("case", sorted(KEY_FILES))
def test_key_files(run: Run, tmp_path: Path, case: str) -> None:
    (tmp_path / "keys").write_text(KEY_FILES[case])
    check_no_leak(
        run("unseal", "--private-key", tmp_path / "keys", input=yaml.safe_dump(_sealed()))
    )


@pytest.mark.parametrize(
    "text",
    [
        f"a: !{MARKER.replace('/', '')} x\n",  # a tag, quoted by the parser
        f"a: *{MARKER.replace('/', '').replace('!', '')}\n",  # an undefined alias
        f'a: "{MARKER}\\q"\n',  # a bad escape right after the value
        f"a: {MARKER}\n b: c\n",  # a mapping where none may start
        f"a: {MARKER}\na: {MARKER}\n",  # a duplicate key
        f'{{"a": "{MARKER}", "a": "{B64}"}}',
        f'{{"a": "{MARKER}" "b"}}',  # broken JSON
        f"{MARKER}: &x [*x]\n",
    ],
)
def test_syntax_errors(run: Run, text: str) -> None:
    check_no_leak(run("seal", "--cert", keypair(0).cert_path, input=text))
    check_no_leak(run("unseal", "--private-key", keypair(0).key_path, input=text))
