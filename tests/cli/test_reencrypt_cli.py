"""``secretsync reencrypt``: trees rewritten in place, atomically, leaving failures untouched."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import yaml

from secretsync import api
from secretsync.documents import load_documents
from tests.cli.conftest import Run
from tests.keypairs import keypair


def _secret(name: str, ns: str = "app", **ann: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "annotations": ann},
            "stringData": {"value": f"plain-{name}"},
        }
    )


def _seal(run: Run, cert: Path, text: str, fmt: str = "yaml") -> str:
    res = run("seal", "--cert", cert, "-o", fmt, input=text)
    assert res.rc == 0, res.err
    return res.out


def _values(run: Run, key: Path, path: Path) -> list[bytes]:
    sealed, _ = load_documents(path.read_bytes(), str(path))
    only = [d for d in sealed if d["kind"] == "SealedSecret"]
    res = run("unseal", "--private-key", key, "-o", "json", input=json.dumps(only))
    assert res.rc == 0, res.err
    docs, _ = load_documents(res.out, "x")
    return [base64.b64decode(v) for d in docs for v in d["data"].values()]


def test_reencrypt_tree(run: Run, tmp_path: Path) -> None:
    old, new, other = keypair(0), keypair(1), keypair(3)
    repo = tmp_path / "repo"
    (repo / "apps" / "a").mkdir(parents=True)
    (repo / ".git").mkdir()
    # a multi-document YAML file mixing a Deployment-like object and two SealedSecrets
    multi = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n"
        + _seal(run, old.cert_path, _secret("one"))
        + "---\n"
        + _seal(run, old.cert_path, _secret("two", **{api.BITNAMI_ANN_CLUSTER_WIDE: "true"}))
    )
    (repo / "apps" / "a" / "multi.yaml").write_text(multi)
    (repo / "apps" / "a" / "multi.yaml").chmod(0o640)
    (repo / "apps" / "j.json").write_text(_seal(run, old.cert_path, _secret("j"), "json"))
    bitnami = yaml.safe_load(_seal(run, old.cert_path, _secret("b")))
    bitnami["apiVersion"] = "bitnami.com/v1alpha1"
    (repo / "apps" / "bitnami.yml").write_text(yaml.safe_dump(bitnami))
    unrelated = "# a comment that must survive\nkind: ConfigMap\nmetadata: {name: c}\n"
    (repo / "apps" / "cm.yaml").write_text(unrelated)
    foreign = _seal(run, other.cert_path, _secret("foreign"))
    (repo / "apps" / "foreign.yaml").write_text(foreign)
    hidden = _seal(run, old.cert_path, _secret("hidden"))
    (repo / ".git" / "s.yaml").write_text(hidden)
    (repo / "notes.txt").write_text("SealedSecret")

    res = run("reencrypt", "--private-key", old.key_path, "--cert", new.cert_path, repo)
    assert res.rc == 1, res
    assert f"{repo}/apps/foreign.yaml" in res.err
    assert "1 file(s) could not be re-encrypted" in res.err
    assert "re-encrypted 4 SealedSecret(s) in 3 file(s)" in res.err
    assert "Traceback" not in res.err

    # failures and unrelated files are byte-for-byte untouched
    assert (repo / "apps" / "foreign.yaml").read_text() == foreign
    assert (repo / "apps" / "cm.yaml").read_text() == unrelated
    assert (repo / ".git" / "s.yaml").read_text() == hidden  # hidden directories are skipped

    # rewritten files: new key opens them, old does not; other docs, format and mode kept
    multi_path = repo / "apps" / "a" / "multi.yaml"
    docs = list(yaml.safe_load_all(multi_path.read_text()))
    assert [d["kind"] for d in docs] == ["Deployment", "SealedSecret", "SealedSecret"]
    assert docs[2]["metadata"]["annotations"][api.ANN_SCOPE] == "cluster-wide"
    assert all(
        d["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == new.fingerprint for d in docs[1:]
    )
    assert stat.S_IMODE(multi_path.stat().st_mode) == 0o640
    assert sorted(_values(run, new.key_path, multi_path)) == [b"plain-one", b"plain-two"]
    assert run("unseal", "--private-key", old.key_path, "-f", repo / "apps" / "j.json").rc == 1
    json_doc = json.loads((repo / "apps" / "j.json").read_text())
    assert json_doc["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == new.fingerprint
    assert (
        yaml.safe_load((repo / "apps" / "bitnami.yml").read_text())["apiVersion"]
        == "bitnami.com/v1alpha1"
    )
    assert _values(run, new.key_path, repo / "apps" / "bitnami.yml") == [b"plain-b"]
    assert not list(repo.rglob("*.tmp"))

    # running again changes nothing (no churn): everything already carries the new fingerprint
    mtimes = {p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file()}
    again = run(
        "reencrypt",
        "--private-key",
        old.key_path,
        "--cert",
        new.cert_path,
        repo / "apps" / "a",
        repo / "apps" / "j.json",
    )
    assert again.rc == 0, again.err
    assert "re-encrypted 0 SealedSecret(s) in 0 file(s); 3 already sealed" in again.err
    assert {p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file()} == mtimes


def test_reencrypt_dry_run_and_missing_path(run: Run, tmp_path: Path) -> None:
    old, new = keypair(0), keypair(1)
    f = tmp_path / "s.yaml"
    f.write_text(_seal(run, old.cert_path, _secret("x")))
    before = f.read_text()
    res = run("reencrypt", "--dry-run", "--private-key", old.key_path, "--cert", new.cert_path, f)
    assert res.rc == 0 and "would re-encrypt 1" in res.err
    assert f.read_text() == before
    res = run(
        "reencrypt", "--private-key", old.key_path, "--cert", new.cert_path, f, tmp_path / "nope"
    )
    assert res.rc == 1 and "nope: no such file or directory" in res.err
    assert f.read_text() != before  # the good file was still done


def test_reencrypt_bad_yaml_left_untouched(run: Run, tmp_path: Path) -> None:
    old, new = keypair(0), keypair(1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: SealedSecret\nmetadata: [unclosed\n")
    res = run("reencrypt", "--private-key", old.key_path, "--cert", new.cert_path, tmp_path)
    assert res.rc == 1
    assert "bad.yaml: invalid YAML" in res.err
    assert bad.read_text() == "kind: SealedSecret\nmetadata: [unclosed\n"
    assert os.listdir(tmp_path) == ["bad.yaml"]
