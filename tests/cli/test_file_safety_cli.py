"""Files we write: plaintext is 0600 whatever existed, symlinks are followed (the link is kept
and its target rewritten), read-only files are refused, FIFOs in a tree never block
(issue 21, items 5 and 6)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import yaml

from secretsync import api
from tests.cli.conftest import Run, check_one_line_error
from tests.keypairs import keypair

SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: app}
stringData: {password: s3cret-pw}
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sealed(run: Run, cert: Path) -> str:
    res = run("seal", "--cert", cert, input=SECRET)
    assert res.rc == 0, res.err
    return res.out


def _fingerprint(path: Path) -> str:
    doc = yaml.safe_load(path.read_text())
    return str(doc["metadata"]["annotations"][api.ANN_KEY_FINGERPRINT])


def test_unseal_w_makes_an_existing_world_readable_file_0600(run: Run, tmp_path: Path) -> None:
    a = keypair(0)
    out = tmp_path / "plain.yaml"
    out.write_text("old\n")
    out.chmod(0o644)
    res = run("unseal", "--private-key", a.key_path, "-w", out, input=_sealed(run, a.cert_path))
    assert res.rc == 0, res.err
    assert "data" in out.read_text()
    assert _mode(out) == 0o600


def test_keys_generate_force_makes_the_key_0600(run: Run, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("old\n")
    key.chmod(0o644)
    res = run(
        "keys", "generate", "--key", key, "--cert", tmp_path / "c.pem", "--bits", "2048",
        "--force",
    )  # fmt: skip
    assert res.rc == 0, res.err
    assert _mode(key) == 0o600


def test_writes_through_a_symlink_keep_the_link(run: Run, tmp_path: Path) -> None:
    a, b = keypair(0), keypair(1)
    real_dir = tmp_path / "real"
    link_dir = tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    real = real_dir / "db.yaml"
    real.write_text(_sealed(run, a.cert_path))
    real.chmod(0o640)
    link = link_dir / "db.yaml"
    link.symlink_to(os.path.relpath(real, link_dir))

    # reencrypt, given the link explicitly: the target is re-sealed, the link stays a link
    res = run("reencrypt", "--private-key", a.key_path, "--cert", b.cert_path, link)
    assert res.rc == 0, res.err
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert _fingerprint(real) == b.fingerprint and _mode(real) == 0o640
    assert sorted(p.name for p in real_dir.iterdir()) == ["db.yaml"]  # no temp file left

    # in a tree holding both the link and its target, the file is processed once
    res = run("reencrypt", "--private-key", b.key_path, "--cert", a.cert_path, tmp_path)
    assert res.rc == 0, res.err
    assert "re-encrypted 1 SealedSecret(s) in 1 file(s)" in res.err
    assert link.is_symlink() and _fingerprint(real) == a.fingerprint

    # seal --merge-into and seal -w through the link
    update = SECRET.replace("password: s3cret-pw", "extra: e")
    res = run("seal", "--cert", a.cert_path, "--merge-into", link, input=update)
    assert res.rc == 0, res.err
    assert link.is_symlink()
    assert set(yaml.safe_load(real.read_text())["spec"]["encryptedData"]) == {"password", "extra"}
    assert run("seal", "--cert", b.cert_path, "-w", link, input=SECRET).rc == 0
    assert link.is_symlink() and _fingerprint(real) == b.fingerprint

    # unseal -w through a link: plaintext lands in the target, which becomes 0600
    plain = real_dir / "plain.yaml"
    plain.write_text("old\n")
    plain.chmod(0o644)
    plain_link = link_dir / "plain.yaml"
    plain_link.symlink_to(plain)
    res = run("unseal", "--private-key", b.key_path, "-f", real, "-w", plain_link)
    assert res.rc == 0, res.err
    assert plain_link.is_symlink() and "data" in plain.read_text() and _mode(plain) == 0o600


def test_read_only_files_are_refused(run: Run, tmp_path: Path) -> None:
    a, b = keypair(0), keypair(1)
    tree = tmp_path / "tree"
    tree.mkdir()
    locked, free = tree / "locked.yaml", tree / "free.yaml"
    for path in (locked, free):
        path.write_text(_sealed(run, a.cert_path))
    locked.chmod(0o444)
    before = locked.read_bytes()

    res = run("reencrypt", "--private-key", a.key_path, "--cert", b.cert_path, tree)
    assert res.rc == 1
    assert f"secretsync: error: {locked}: read-only file, not rewritten" in res.err
    assert "Traceback" not in res.err
    assert locked.read_bytes() == before and _mode(locked) == 0o444
    assert _fingerprint(free) == b.fingerprint  # the others are still processed

    sealed = free.read_text()
    res = run("unseal", "--private-key", b.key_path, "-w", locked, input=sealed)
    check_one_line_error(res, str(locked), "read-only file, not rewritten")
    res = run("seal", "--cert", b.cert_path, "--merge-into", locked, input=SECRET)
    check_one_line_error(res, str(locked), "read-only file, not rewritten")
    res = run("seal", "--cert", b.cert_path, "-w", locked, input=SECRET)
    check_one_line_error(res, str(locked), "read-only file, not rewritten")
    assert locked.read_bytes() == before and _mode(locked) == 0o444


def test_fifo_in_a_tree_is_skipped_and_fifo_input_still_works(run: Run, tmp_path: Path) -> None:
    a, b = keypair(0), keypair(1)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.yaml").write_text(_sealed(run, a.cert_path))
    fifo = tree / "pipe.yaml"
    os.mkfifo(fifo)
    res = run("reencrypt", "--private-key", a.key_path, "--cert", b.cert_path, tree)
    assert res.rc == 0, res.err
    assert f"{fifo}: not a regular file, skipped" in res.err
    assert _fingerprint(tree / "ok.yaml") == b.fingerprint
    # named explicitly it is a failure (nothing to rewrite in place), not a hang
    res = run("reencrypt", "--private-key", a.key_path, "--cert", b.cert_path, "-q", fifo)
    assert res.rc == 1 and f"{fifo}: not a regular file" in res.err

    # `seal -f <(...)`: reading a FIFO named with -f is legitimate
    def feed() -> None:
        with open(fifo, "w") as fh:
            fh.write(SECRET)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    res = run("seal", "--cert", a.cert_path, "-f", fifo)
    writer.join(10)
    assert res.rc == 0, res.err
    assert yaml.safe_load(res.out)["kind"] == "SealedSecret"


def test_w_dev_stdout_writes_to_the_stream(run: Run, tmp_path: Path) -> None:
    a = keypair(0)
    res = run("seal", "--cert", a.cert_path, "-w", "/dev/stdout", input=SECRET)
    assert res.rc == 0, res.err
    assert yaml.safe_load(res.out)["kind"] == "SealedSecret"
