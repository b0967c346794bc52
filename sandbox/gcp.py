"""The GCP Secret Manager emulator process (see `sandbox.gcp_emulator`), plaintext gRPC."""

from __future__ import annotations

import socket
from typing import Any

from sandbox import paths, proc


def start(cfg: dict[str, Any]) -> proc.Proc:
    port = cfg["ports"]["gcp"]
    cfg["gcp_grpc"] = f"127.0.0.1:{port}"
    return proc.spawn("gcp-sm-emulator", [
        str(paths.VENV_BIN / "python"), "-m", "sandbox.gcp_emulator", "--port", str(port),
    ], cwd=paths.REPO)


def healthy(cfg: dict[str, Any]) -> bool:
    host, port = cfg["gcp_grpc"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2):
        return True
