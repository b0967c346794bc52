"""Where the sandbox keeps things: the repo's `.dev/` for state and the user cache for binaries.

Kept in one module so the launcher, the builder and the pytest fixtures agree on every path.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEV = Path(os.environ.get("SECRETSYNC_DEV_DIR", REPO / ".dev"))
LOGS = DEV / "logs"
STATE = DEV / "state"
RUN = DEV / "run"
ENV_FILE = DEV / "env"
CACHE = Path(os.environ.get("SECRETSYNC_CACHE", Path.home() / ".cache" / "secretsync"))
BIN_CACHE = CACHE / "bin"
SRC_CACHE = CACHE / "src"
VENV_BIN = REPO / ".venv" / "bin"


def ensure_dirs() -> None:
    for d in (DEV, LOGS, STATE, RUN):
        d.mkdir(parents=True, exist_ok=True)
