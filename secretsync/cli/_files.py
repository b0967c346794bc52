"""Which files a command that walks trees reads (``reencrypt``, ``reencrypt --cluster``), and
how: each file once, regular files only, opened so that a FIFO cannot block the read.

Shared by ``reencrypt`` and ``cluster_cmds`` (which each import it, not each other).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass

EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass
class FileResult:
    path: str
    resealed: int = 0
    current: int = 0
    error: str | None = None


def discover(paths: list[str]) -> tuple[list[str], list[FileResult]]:
    """The files to look at, each once (a link and its target are one file), and the paths
    that cannot be: missing, or given explicitly but not a regular file. In a tree, anything
    but a regular file (a FIFO named ``x.yaml`` would block the read forever, a socket, a
    device) is skipped with one line, as kubectl does."""
    files: list[str] = []
    missing: list[FileResult] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            files.append(path)

    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.endswith(EXTENSIONS):
                        continue
                    full = os.path.join(root, name)
                    if _regular(full):
                        add(full)
                    elif os.path.lexists(full):
                        warning = f"secretsync: warning: {full}: not a regular file, skipped"
                        print(warning, file=sys.stderr)
        elif _regular(path):
            add(path)
        elif os.path.lexists(path):
            missing.append(FileResult(path, error="not a regular file"))
        else:
            missing.append(FileResult(path, error="no such file or directory"))
    return files, missing


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def read_regular(path: str) -> bytes:
    """The file's bytes, refusing anything that turned into a non-regular file since
    ``discover`` (opened non-blocking: opening a FIFO must not wait for a writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return fh.read()
