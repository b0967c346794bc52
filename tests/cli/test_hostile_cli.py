"""Hostile and careless input through the installed ``secretsync`` script: each case ends in
one precise line (exit 1, or 2 for a bad flag), never an "unexpected ... (a bug)" exit."""

from __future__ import annotations

import datetime as _dt
import os
import resource
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from secretsync.crypto import pem
from tests.cli.conftest import SCRIPT, Result, Run, check_one_line_error
from tests.hostile import billion_laughs, ca_and_leaf
from tests.keypairs import keypair

SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: app}\nstringData: {a: b}\n"


def check_usage_error(res: Result, needle: str) -> None:
    assert res.rc == 2, res
    assert "Traceback" not in res.err and "usage:" in res.err
    assert needle in res.err.strip().splitlines()[-1], res.err


def _limited(args: list[str], stdin: bytes, tmp_path: Path) -> Result:
    """The script under a 1 GiB address-space limit and a 60 s hang guard: without the alias
    check it would need ~6 GB (and a minute) to print the error."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
        preexec_fn=limit,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


# --- item 2: the YAML alias bomb ------------------------------------------------------------


@pytest.mark.parametrize("field", ["kind", "apiVersion"])
@pytest.mark.parametrize("command", ["seal", "unseal"])
def test_alias_bomb(tmp_path: Path, command: str, field: str) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs(field))
    key = (
        ["--cert", keypair(0).cert_path]
        if command == "seal"
        else ["--private-key", keypair(0).key_path]
    )
    res = _limited([command, *map(str, key), "-f", str(bomb)], b"", tmp_path)
    check_one_line_error(res, "bomb.yaml: invalid YAML: document 1: aliases expand")
    assert len(res.err) < 300


def test_alias_bomb_in_a_key_file(tmp_path: Path) -> None:
    bomb = tmp_path / "keys.yaml"
    bomb.write_text(billion_laughs("kind"))
    res = _limited(["unseal", "--private-key", str(bomb)], SECRET.encode(), tmp_path)
    check_one_line_error(
        res, "keys.yaml: neither a PEM private key nor a key Secret", "1: aliases expand"
    )


def test_alias_bomb_in_reencrypt(tmp_path: Path) -> None:
    bomb = tmp_path / "sealed.yaml"
    bomb.write_text("# SealedSecret\n" + billion_laughs("kind"))
    res = _limited(
        ["reencrypt", "--private-key", str(keypair(0).key_path), "--cert",
         str(keypair(1).cert_path), str(tmp_path)],
        b"",
        tmp_path,
    )  # fmt: skip
    assert res.rc == 1 and "aliases expand" in res.err and len(res.err) < 1000, res


# --- item 7: offline checks before the commit ------------------------------------------------


@pytest.mark.parametrize(
    ("start", "needle"),
    [(-20, "the certificate expired on"), (+20, "the certificate is not valid before")],
)
def test_expired_or_future_certificate(run: Run, tmp_path: Path, start: int, needle: str) -> None:
    now = _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=start)
    cert = pem.self_signed_certificate(keypair(0).key.private_key, now=now, days=10)
    (tmp_path / "c.pem").write_bytes(pem.certificate_to_pem(cert))
    check_one_line_error(
        run("seal", "--cert", "c.pem", input=SECRET), "c.pem: " + needle, "--allow-expired"
    )
    check_one_line_error(
        run("seal", "--raw", "--cert", "c.pem", "-n", "a", "--name", "b", input="x"), needle
    )
    res = run("seal", "--cert", "c.pem", "--allow-expired", input=SECRET)
    assert res.rc == 0 and res.err == "", res
    assert run("unseal", "--private-key", keypair(0).key_path, input=res.out).rc == 0


def test_weak_key_warns_and_seals(run: Run, tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "c.pem").write_bytes(pem.certificate_to_pem(pem.self_signed_certificate(weak)))
    res = run("seal", "--cert", "c.pem", input=SECRET)
    assert res.rc == 0, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secretsync: warning: c.pem: ")
    assert "1024 bits" in lines[0] and "2048" in lines[0]
    assert yaml.safe_load(res.out)["kind"] == "SealedSecret"


def test_bundle_with_ca_first_seals_to_the_leaf(run: Run, tmp_path: Path) -> None:
    ca, leaf, _ = ca_and_leaf()  # the leaf carries keypair(0)'s public key
    (tmp_path / "bundle.pem").write_bytes(pem.certificate_to_pem(ca) + pem.certificate_to_pem(leaf))
    res = run("seal", "--cert", "bundle.pem", input=SECRET)
    assert res.rc == 0, res
    assert run("unseal", "--private-key", keypair(0).key_path, input=res.out).rc == 0


KEY_RULE = "not a valid Secret key"


@pytest.mark.parametrize(
    ("stdin", "extra", "needle"),
    [
        (SECRET.replace("{a: b}", "{a/b: x}"), [], f"(Secret app/db): stringData.a/b: {KEY_RULE}"),
        (SECRET.replace("{a: b}", "{'..': x}"), [], f"stringData...: {KEY_RULE}"),
        (SECRET.replace("stringData: {a: b}", "data: {'a b': eA==}"), [], "data[a key not shown]"),
        (
            SECRET.replace("name: db", "name: My_DB"),
            [],
            "(Secret app/<invalid name>): metadata.name is not a valid Secret name",
        ),
        (
            SECRET.replace("namespace: app", "namespace: app.prod"),
            [],
            "metadata.namespace is not a valid namespace",
        ),
        (
            SECRET.replace(", namespace: app", ""),
            ["-n", "App"],
            "-n/--namespace is not a valid namespace",
        ),
        (SECRET + "stringData: {c: d}\n", [], "line 5 column 1: duplicate key 'stringData'"),
        (SECRET.replace("{a: b}", "{a: b, a: c}"), [], "line 4 column 20: duplicate key 'a'"),
    ],
)
def test_seal_refuses_what_kubernetes_would(
    run: Run, stdin: str, extra: list[str], needle: str
) -> None:
    check_one_line_error(run("seal", "--cert", keypair(0).cert_path, *extra, input=stdin), needle)


def test_raw_names_are_checked(run: Run) -> None:
    cert = keypair(0).cert_path
    check_one_line_error(
        run("seal", "--raw", "--cert", cert, "-n", "app", "--name", "Bad/Name", input="x"),
        "--name is not a valid Secret name",
    )
    check_one_line_error(
        run("seal", "--raw", "--cert", cert, "-n", "a_b", "--name", "db", input="x"),
        "--namespace is not a valid namespace",
    )


# --- item 8: no more "unexpected ... (a bug)" -------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        ('{"kind": "Secret", "x": ' + "[" * 100_000, "<stdin>: JSON nested deeper than 100 levels"),
        ("kind: Secret\nx: " + "[" * 101 + "]" * 101, "<stdin>: document 1 nests deeper than 100"),
        ("x: " + "[" * 100_000, "<stdin>: invalid YAML at line 1"),
    ],
)
def test_deep_nesting(run: Run, stdin: str, needle: str) -> None:
    for command in (
        ["seal", "--cert", keypair(0).cert_path],
        ["unseal", "--private-key", keypair(0).key_path],
    ):
        check_one_line_error(run(*command, input=stdin), needle)  # fmt: skip


def test_dev_zero_as_input(run: Run) -> None:
    check_one_line_error(
        run("seal", "--cert", keypair(0).cert_path, "-f", "/dev/zero"),
        "/dev/zero: larger than 64 MiB, the input limit",
    )
    check_one_line_error(
        run("seal", "--cert", "/dev/zero", input=SECRET), "/dev/zero: larger than 64 MiB"
    )
    check_one_line_error(
        run("unseal", "--private-key", "/dev/zero", input=SECRET), "/dev/zero: larger than 64 MiB"
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--days", "99999999"], "argument --days: must be 1 to 36500"),
        (["--days", "0"], "argument --days: must be 1 to 36500"),
        (["--common-name", ""], "argument --common-name: must be 1 to 64 characters"),
        (["--common-name", "x" * 65], "argument --common-name: must be 1 to 64 characters"),
        (["--bits", "99999"], "argument --bits: must be 2048 to 16384"),
        (["--bits", "1024"], "argument --bits: must be 2048 to 16384"),
        (["--bits", "lots"], "argument --bits: not a whole number"),
    ],
)
def test_keys_generate_bounds(run: Run, tmp_path: Path, args: list[str], needle: str) -> None:
    check_usage_error(run("keys", "generate", "--key", "k.pem", "--cert", "c.pem", *args), needle)
    assert list(tmp_path.iterdir()) == []


def test_keys_generate_leaves_no_orphan_key(run: Run, tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    for cert in ("missing/c.pem", "adir"):
        res = run("keys", "generate", "--key", "k.pem", "--cert", cert, "--bits", "2048")
        check_one_line_error(res, cert)
        assert ".tmp" not in res.err
        assert not (tmp_path / "k.pem").exists()


def _closed_stdin(*args: str | Path) -> Result:
    proc = subprocess.run(
        ["sh", "-c", '"$0" "$@" <&-', str(SCRIPT), *map(str, args)],
        capture_output=True,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_closed_stdin() -> None:
    cert = keypair(0).cert_path
    for args in (
        ["seal", "--cert", cert],
        ["seal", "--raw", "--cert", cert, "-n", "a", "--name", "b"],
        ["unseal", "--private-key", keypair(0).key_path],
    ):
        check_one_line_error(_closed_stdin(*args), "stdin is closed; give the input with -f FILE")


def test_flow_style_yaml_is_accepted(run: Run) -> None:
    flow = (
        "{apiVersion: v1, kind: Secret, metadata: {name: db, namespace: app}, stringData: {a: b}}"
    )
    res = run("seal", "--cert", keypair(0).cert_path, input=flow)
    assert res.rc == 0, res
    assert yaml.safe_load(res.out)["kind"] == "SealedSecret"  # YAML in, YAML out


def test_write_errors_name_the_users_path(run: Run, tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    for out in ("missing/sealed.yaml", "adir"):
        res = run("seal", "--cert", keypair(0).cert_path, "-w", out, input=SECRET)
        check_one_line_error(res, out)
        assert ".tmp" not in res.err, res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]
    assert list((tmp_path / "adir").iterdir()) == []
