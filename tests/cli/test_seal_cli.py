"""``secretsync seal`` / ``unseal`` / ``keys generate`` through the installed console script."""

from __future__ import annotations

import base64
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from secretsync import api
from secretsync.crypto.format import scope_label, unseal_item
from tests.cli.conftest import SCRIPT, Run, check_one_line_error
from tests.keypairs import keypair

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: app
  labels: {app: db}
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"s3cret-pw"}}'
type: Opaque
stringData:
  password: s3cret-pw
data:
  user: YWRtaW4=
---
apiVersion: v1
kind: Secret
metadata:
  name: shared
  namespace: app
  annotations:
    sealedsecrets.bitnami.com/namespace-wide: "true"
stringData:
  token: tok-123
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    k0 = keypair(0)
    (tmp_path / "secret.yaml").write_text(SECRET)
    return {"key": k0.key_path, "cert": k0.cert_path, "secret": tmp_path / "secret.yaml"}


def _data(secret: dict[str, object]) -> dict[str, bytes]:
    data = secret["data"]
    assert isinstance(data, dict)
    return {k: base64.b64decode(v) for k, v in data.items()}


def test_seal_unseal_round_trip_yaml(run: Run, files: dict[str, Path]) -> None:
    res = run("seal", "--cert", files["cert"], "-f", files["secret"])
    assert res.rc == 0, res.err
    assert "s3cret-pw" not in res.out and "last-applied" not in res.out
    docs = list(yaml.safe_load_all(res.out))
    assert [d["kind"] for d in docs] == ["SealedSecret", "SealedSecret"]
    assert all(d["apiVersion"] == "secretsync.io/v1alpha1" for d in docs)
    assert docs[0]["metadata"]["annotations"] == {api.ANN_KEY_FINGERPRINT: keypair(0).fingerprint}
    assert docs[1]["metadata"]["annotations"][api.ANN_SCOPE] == "namespace-wide"
    assert docs[1]["metadata"]["annotations"][api.BITNAMI_ANN_NAMESPACE_WIDE] == "true"

    back = run("unseal", "--private-key", files["key"], input=res.out)
    assert back.rc == 0, back.err
    secrets = list(yaml.safe_load_all(back.out))
    assert _data(secrets[0]) == {"password": b"s3cret-pw", "user": b"admin"}
    assert secrets[0]["metadata"]["labels"] == {"app": "db"}
    assert _data(secrets[1]) == {"token": b"tok-123"}


def test_json_in_json_out_and_stdin(run: Run, files: dict[str, Path]) -> None:
    doc = yaml.safe_load_all(SECRET).__next__()
    res = run("seal", "--cert", files["cert"], input=json.dumps(doc))
    assert res.rc == 0, res.err
    sealed = json.loads(res.out)
    assert sealed["kind"] == "SealedSecret"
    yaml_out = run("seal", "--cert", files["cert"], "-o", "yaml", input=json.dumps(doc))
    assert yaml.safe_load(yaml_out.out)["kind"] == "SealedSecret"
    back = run("unseal", "--private-key", files["key"], "-o", "json", input=res.out)
    assert back.rc == 0, back.err
    assert _data(json.loads(back.out))["password"] == b"s3cret-pw"


@pytest.mark.parametrize("scope", api.SCOPES)
def test_raw(run: Run, files: dict[str, Path], tmp_path: Path, scope: str) -> None:
    (tmp_path / "value").write_bytes(b"raw\x00value")
    res = run(
        "seal", "--raw", "--cert", files["cert"], "--scope", scope,
        "--namespace", "ns", "--name", "n", "--from-file", tmp_path / "value",
    )  # fmt: skip
    assert res.rc == 0, res.err
    assert not res.out.endswith("\n") and res.out.startswith("Ag")
    label = scope_label(scope, "ns", "n")
    raw = unseal_item(keypair(0).key.private_key, base64.b64decode(res.out), label)
    assert raw == b"raw\x00value"
    stdin = run("seal", "--raw", "--cert", files["cert"], "-n", "ns", "--name", "n", input="x")
    assert stdin.rc == 0 and stdin.out.startswith("Ag")


def test_raw_usage(run: Run, files: dict[str, Path]) -> None:
    check_one_line_error(run("seal", "--raw", "--cert", files["cert"], input="x"), "--namespace")
    check_one_line_error(
        run("seal", "--raw", "--cert", files["cert"], "-n", "ns", input="x"), "--name"
    )


def test_write_file_and_no_partial_output(run: Run, files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sealed.yaml"
    assert run("seal", "--cert", files["cert"], "-f", files["secret"], "-w", out).rc == 0
    good = out.read_text()
    assert yaml.safe_load_all(good).__next__()["kind"] == "SealedSecret"
    # second document is bad: nothing written, previous file intact
    bad = SECRET + "---\nkind: ConfigMap\nmetadata: {name: c}\n"
    res = run("seal", "--cert", files["cert"], "-w", out, input=bad)
    check_one_line_error(res, "<stdin>: document 3 (ConfigMap c): not a Secret")
    assert out.read_text() == good
    new = tmp_path / "new.yaml"
    run("seal", "--cert", files["cert"], "-w", new, input=bad)
    assert not new.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        ("kind: ConfigMap\nmetadata: {name: c}\n", "not a Secret"),
        ("a: [1, 2\n", "invalid YAML at line"),
        ('{"kind": "Secret", ', "invalid JSON"),
        (
            "kind: Secret\nmetadata: {name: n}\nstringData: {a: b}\n",
            "strict scope needs a namespace",
        ),
        ("kind: Secret\nmetadata: {name: n, namespace: x}\n", "no data or stringData"),
        (
            "kind: Secret\nmetadata: {name: n, namespace: x}\nstringData: {pin: 98765}\n",
            "stringData.pin",
        ),
        ("", "no documents"),
    ],
)
def test_seal_bad_input(run: Run, files: dict[str, Path], stdin: str, needle: str) -> None:
    res = run("seal", "--cert", files["cert"], input=stdin)
    check_one_line_error(res, needle)
    assert "98765" not in res.err


def test_seal_bad_cert(run: Run, files: dict[str, Path], tmp_path: Path) -> None:
    check_one_line_error(run("seal", "--cert", files["key"], input=SECRET), "private key")
    check_one_line_error(run("seal", "--cert", tmp_path / "nope.pem", input=SECRET), "nope.pem")
    (tmp_path / "junk.pem").write_text("junk")
    check_one_line_error(run("seal", "--cert", tmp_path / "junk.pem", input=SECRET), "junk.pem")


def test_allow_empty_data(run: Run, files: dict[str, Path]) -> None:
    empty = "kind: Secret\napiVersion: v1\nmetadata: {name: n, namespace: x}\n"
    res = run("seal", "--cert", files["cert"], "--allow-empty-data", input=empty)
    assert res.rc == 0, res.err
    assert yaml.safe_load(res.out)["spec"]["encryptedData"] == {}


def test_scope_flag_and_cluster_wide_without_namespace(run: Run, files: dict[str, Path]) -> None:
    doc = "kind: Secret\napiVersion: v1\nmetadata: {name: n}\nstringData: {a: b}\n"
    res = run("seal", "--cert", files["cert"], "--scope", "cluster-wide", input=doc)
    assert res.rc == 0, res.err
    sealed = yaml.safe_load(res.out)
    assert "namespace" not in sealed["metadata"]
    assert sealed["metadata"]["annotations"][api.BITNAMI_ANN_CLUSTER_WIDE] == "true"
    # cluster-wide items open under any namespace: move it and unseal
    sealed["metadata"]["namespace"] = "elsewhere"
    back = run("unseal", "--private-key", files["key"], input=yaml.safe_dump(sealed))
    assert back.rc == 0, back.err
    assert _data(yaml.safe_load(back.out)) == {"a": b"b"}


def test_unseal_errors(run: Run, files: dict[str, Path], tmp_path: Path) -> None:
    sealed = yaml.safe_load_all(run("seal", "--cert", files["cert"], input=SECRET).out).__next__()

    moved = dict(sealed, metadata=dict(sealed["metadata"], namespace="other"))
    check_one_line_error(
        run("unseal", "--private-key", files["key"], input=yaml.safe_dump(moved)),
        "<stdin>: document 1 (SealedSecret other/db): spec.encryptedData.password",
        "could decrypt",
    )
    tampered = json.loads(json.dumps(sealed))
    item = bytearray(base64.b64decode(tampered["spec"]["encryptedData"]["user"]))
    item[-3] ^= 1
    tampered["spec"]["encryptedData"]["user"] = base64.b64encode(bytes(item)).decode()
    check_one_line_error(
        run("unseal", "--private-key", files["key"], input=yaml.safe_dump(tampered)),
        "spec.encryptedData.user",
    )
    truncated = json.loads(json.dumps(sealed))
    truncated["spec"]["encryptedData"]["user"] = base64.b64encode(item[:100]).decode()
    check_one_line_error(
        run("unseal", "--private-key", files["key"], input=yaml.safe_dump(truncated)), "truncated"
    )
    wrong_key = run("unseal", "--private-key", keypair(1).key_path, input=yaml.safe_dump(sealed))
    check_one_line_error(wrong_key, "could decrypt")
    check_one_line_error(
        run("unseal", "--private-key", files["cert"], input=yaml.safe_dump(sealed)),
        "no private key",
    )
    check_one_line_error(
        run("unseal", "--private-key", tmp_path / "missing.pem", input=yaml.safe_dump(sealed)),
        "missing.pem",
    )
    check_one_line_error(
        run("unseal", "--private-key", files["key"], input=SECRET), "not a SealedSecret"
    )
    out = tmp_path / "plain.yaml"
    res = run("unseal", "--private-key", files["key"], "-w", out, input=yaml.safe_dump(moved))
    assert res.rc == 1 and not out.exists()


def test_unseal_from_key_secret_file_and_several_keys(
    run: Run, files: dict[str, Path], tmp_path: Path
) -> None:
    from secretsync.keys import secret_body_for_key

    k1 = keypair(1)
    sealed_by_1 = run("seal", "--cert", k1.cert_path, input=SECRET).out
    secret_file = tmp_path / "keys.json"
    body = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [secret_body_for_key(k1.key, namespace="s")],
    }
    secret_file.write_text(json.dumps(body))
    res = run(
        "unseal", "--private-key", files["key"], "--private-key", secret_file, input=sealed_by_1
    )
    assert res.rc == 0, res.err
    out = tmp_path / "plain.yaml"
    assert (
        run("unseal", "--private-key", secret_file, "-f", "-", "-w", out, input=sealed_by_1).rc == 0
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(list(yaml.safe_load_all(out.read_text()))) == 2


def test_merge_into(run: Run, files: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "sealed.json"
    one = SECRET.split("---\n")[0]
    assert run("seal", "--cert", files["cert"], "-o", "json", "-w", target, input=one).rc == 0
    target.chmod(0o640)
    before = json.loads(target.read_text())
    update = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
        "stringData: {password: new-pw, extra: e}\n"
    )
    res = run("seal", "--cert", files["cert"], "--merge-into", target, input=update)
    assert res.rc == 0, res.err
    assert res.out == ""
    after = json.loads(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert after["spec"]["encryptedData"]["user"] == before["spec"]["encryptedData"]["user"]
    assert set(after["spec"]["encryptedData"]) == {"user", "password", "extra"}
    plain = json.loads(run("unseal", "--private-key", files["key"], "-f", target).out)
    assert _data(plain) == {"user": b"admin", "password": b"new-pw", "extra": b"e"}


def test_cert_over_http(run: Run, files: dict[str, Path]) -> None:
    cert = files["cert"].read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, code = (cert, 200) if self.path == "/v1/cert.pem" else (b"no", 404)
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        res = run("seal", "--cert", f"{url}/v1/cert.pem", "-f", files["secret"])
        assert res.rc == 0, res.err
        check_one_line_error(run("seal", "--cert", f"{url}/missing", input=SECRET), "HTTP 404")
    finally:
        server.shutdown()


def test_keys_generate(run: Run, tmp_path: Path) -> None:
    res = run("keys", "generate", "--key", "k.pem", "--cert", "c.pem", "--bits", "2048")
    assert res.rc == 0, res.err
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert (tmp_path / "k.pem").read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    sealed = run("seal", "--cert", "c.pem", input=SECRET)
    assert run("unseal", "--private-key", "k.pem", input=sealed.out).rc == 0
    check_one_line_error(
        run("keys", "generate", "--key", "k.pem", "--cert", "x.pem"), "already exists"
    )
    assert (
        run("keys", "generate", "--key", "k.pem", "--cert", "c.pem", "--bits", "2048", "--force").rc
        == 0
    )


def test_usage_errors_exit_2(run: Run) -> None:
    for args in ([], ["nope"], ["seal", "--scope", "galaxy"], ["unseal"], ["keys"], ["reencrypt"]):
        res = run(*args)
        assert res.rc == 2, (args, res)
        assert "usage:" in res.err and "Traceback" not in res.err
    assert run("--version").out.startswith("secretsync ")
    assert "fetch-cert" in run("--help").out


def test_python_dash_m(files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "secretsync",
            "seal",
            "--cert",
            str(files["cert"]),
            "-f",
            str(files["secret"]),
        ],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"SealedSecret" in proc.stdout


def test_seal_path_never_imports_kubernetes_or_kopf(files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            str(SCRIPT),
            "seal",
            "--cert",
            str(files["cert"]),
            "-f",
            str(files["secret"]),
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    imported = {
        line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line
    }
    assert "secretsync.sealing" in imported  # the measurement itself works
    heavy = {
        m
        for m in imported
        if m.split(".")[0] in ("kubernetes", "kopf", "urllib3", "secretsync")
        and (
            m.split(".")[0] != "secretsync"
            or m.startswith(("secretsync.controller", "secretsync.kube"))
        )
    }
    assert heavy == set(), heavy
    # and neither the thread pool nor the key registry: seal needs only the public key
    assert "concurrent.futures" not in imported and "secretsync.keys" not in imported


def test_fetch_cert_without_cluster_fails_cleanly(run: Run) -> None:
    res = run("fetch-cert")
    check_one_line_error(res, "kubeconfig")
    check_one_line_error(run("seal", input=SECRET), "kubeconfig")
