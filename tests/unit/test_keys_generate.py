"""``keys generate`` writes the key and its certificate, or neither: when writing the
certificate fails after the key was written, the key file is put back as it was."""

from __future__ import annotations

import argparse
import errno
import stat
from pathlib import Path

import pytest

from secretsync.cli import keys_generate
from secretsync.crypto import pem
from tests.keypairs import keypair


def _args(tmp_path: Path, force: bool = False) -> argparse.Namespace:
    return argparse.Namespace(
        key=str(tmp_path / "key.pem"),
        cert=str(tmp_path / "cert.pem"),
        bits=4096,
        days=10,
        common_name="t",
        force=force,
    )


@pytest.fixture
def failing_cert_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pre-made key (no 4096-bit generation) and a disk that is full for the certificate."""
    made = keypair(0).key.private_key
    keypair(1)  # made before generation is patched
    monkeypatch.setattr(pem, "generate_private_key", lambda bits: made)
    real = keys_generate.atomic_write

    def write(path: str, data: bytes, **kw: object) -> None:
        if path.endswith("cert.pem"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(keys_generate, "atomic_write", write)


@pytest.mark.usefixtures("failing_cert_write")
def test_no_orphan_key_when_the_certificate_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No space left"):
        keys_generate.run(_args(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("failing_cert_write")
def test_force_restores_the_previous_key(tmp_path: Path) -> None:
    old = keypair(1)
    (tmp_path / "key.pem").write_bytes(old.key_path.read_bytes())
    (tmp_path / "cert.pem").write_bytes(old.cert_path.read_bytes())
    with pytest.raises(OSError, match="No space left"):
        keys_generate.run(_args(tmp_path, force=True))
    # the old pair still matches: no new key next to the old certificate
    assert (tmp_path / "key.pem").read_bytes() == old.key_path.read_bytes()
    assert (tmp_path / "cert.pem").read_bytes() == old.cert_path.read_bytes()
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
