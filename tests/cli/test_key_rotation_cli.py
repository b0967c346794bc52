"""Key rotation through the console script: ``seal --merge-into`` with a new certificate,
then ``reencrypt``, must leave no item on the old key (issue 21, item 4)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from secretsync import api
from tests.cli.conftest import Run, check_one_line_error
from tests.keypairs import keypair

SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: app}
stringData: {user: admin, password: old-pw}
"""
UPDATE = """\
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: app}
stringData: {password: new-pw}
"""
WANT = {"user": b"admin", "password": b"new-pw"}


def _unseal(run: Run, path: Path, *keys: Path) -> dict[str, bytes] | None:
    args = [a for k in keys for a in ("--private-key", str(k))]
    res = run("unseal", *args, "-o", "json", "-f", path)
    if res.rc != 0:
        return None
    return {k: base64.b64decode(v) for k, v in json.loads(res.out)["data"].items()}


def _merged(run: Run, tmp_path: Path) -> tuple[Path, str]:
    """Sealed to A, then ``password`` merged in with B's certificate: (file, stderr)."""
    a, b = keypair(0), keypair(1)
    target = tmp_path / "db.yaml"
    assert run("seal", "--cert", a.cert_path, "-w", target, input=SECRET).rc == 0
    res = run("seal", "--cert", b.cert_path, "--merge-into", target, input=UPDATE)
    assert res.rc == 0, res.err
    return target, res.err


def test_merge_then_reencrypt_moves_the_old_items(run: Run, tmp_path: Path) -> None:
    a, b = keypair(0), keypair(1)
    target, err = _merged(run, tmp_path)
    # the kept item is still on A: the file must not claim B, and the user is told
    annotations = yaml.safe_load(target.read_text())["metadata"].get("annotations") or {}
    assert annotations.get(api.ANN_KEY_FINGERPRINT) != b.fingerprint
    assert "warning" in err and "reencrypt" in err
    assert _unseal(run, target, b.key_path) is None  # stranded on A until reencrypt runs
    both = tmp_path / "a+b.pem"
    both.write_bytes(a.key_path.read_bytes() + b.key_path.read_bytes())

    res = run("reencrypt", "--private-key", both, "--cert", b.cert_path, target)
    assert res.rc == 0, res.err
    assert "re-encrypted 1 SealedSecret(s) in 1 file(s)" in res.err
    assert _unseal(run, target, b.key_path) == WANT  # A can be retired now
    doc = yaml.safe_load(target.read_text())
    assert doc["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT] == b.fingerprint

    before = target.read_bytes()
    res = run("reencrypt", "--private-key", both, "--cert", b.cert_path, target)
    assert res.rc == 0, res.err
    assert "re-encrypted 0 SealedSecret(s)" in res.err and "1 already sealed" in res.err
    assert target.read_bytes() == before  # a second run changes nothing


def test_reencrypt_does_not_trust_a_lying_annotation(run: Run, tmp_path: Path) -> None:
    """What older versions wrote: B's fingerprint over an item still on A. With only the old
    key at hand, the item A opens is re-sealed; the one no key opens is B's (as claimed)."""
    a, b = keypair(0), keypair(1)
    target, _ = _merged(run, tmp_path)
    doc = yaml.safe_load(target.read_text())
    doc["metadata"]["annotations"] = {api.ANN_KEY_FINGERPRINT: b.fingerprint}
    target.write_text(yaml.safe_dump(doc))

    res = run("reencrypt", "--private-key", a.key_path, "--cert", b.cert_path, target)
    assert res.rc == 0, res.err
    assert "re-encrypted 1 SealedSecret(s)" in res.err
    assert _unseal(run, target, b.key_path) == WANT
    before = target.read_bytes()
    res = run("reencrypt", "--private-key", a.key_path, "--cert", b.cert_path, target)
    assert res.rc == 0 and "re-encrypted 0" in res.err, res.err
    assert target.read_bytes() == before


def test_reencrypt_without_the_new_key_says_how_to_place_unknown_items(
    run: Run, tmp_path: Path
) -> None:
    a, b = keypair(0), keypair(1)
    target, _ = _merged(run, tmp_path)
    doc = yaml.safe_load(target.read_text())
    doc["metadata"].pop("annotations", None)  # as this version's merge leaves it
    target.write_text(yaml.safe_dump(doc))
    before = target.read_bytes()
    res = run("reencrypt", "--private-key", a.key_path, "--cert", b.cert_path, "-q", target)
    assert res.rc == 1
    lines = res.err.strip().splitlines()
    assert "spec.encryptedData.password" in lines[0] and "--private-key" in lines[0]
    assert "new-pw" not in res.err and "Traceback" not in res.err
    assert target.read_bytes() == before
    # with B's key too, the same run succeeds
    res = run(
        "reencrypt", "--private-key", a.key_path, "--private-key", b.key_path,
        "--cert", b.cert_path, target,
    )  # fmt: skip
    assert res.rc == 0, res.err
    assert _unseal(run, target, b.key_path) == WANT
    check_one_line_error(run("unseal", "--private-key", a.key_path, "-f", target), "encryptedData")
