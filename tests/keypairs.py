"""Test-only sealing keypairs, generated once per test process and shared by every test.

RSA-4096 generation takes ~0.4 s (tail over 1 s), so each key is made once (lru_cache) and
written to a private temporary directory as ``key<N>.pem`` (PKCS#1) + ``cert<N>.pem``.
Plain functions rather than fixtures, so unit, CLI and integration tests can all use them
without a shared conftest.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from secretsync.crypto import pem
from secretsync.keys import SealingKey


@dataclass(frozen=True)
class KeyFiles:
    key: SealingKey
    key_path: Path
    cert_path: Path

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


@functools.cache
def _dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="secretsync-test-keys-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def keypair(n: int = 0, bits: int = 4096) -> KeyFiles:
    """Test key number ``n`` (distinct keys for distinct n)."""
    key = SealingKey.generate(bits)
    directory = _dir()
    key_path = directory / f"key{n}-{bits}.pem"
    cert_path = directory / f"cert{n}-{bits}.pem"
    key_path.write_bytes(pem.private_key_to_pem(key.private_key))
    key_path.chmod(0o600)
    assert key.certificate is not None
    cert_path.write_bytes(pem.certificate_to_pem(key.certificate))
    return KeyFiles(key, key_path, cert_path)
