"""moto server (PyPI `moto[server]`): AWS Secrets Manager, SSM Parameter Store and STS."""

from __future__ import annotations

import urllib.request
from typing import Any

from sandbox import paths, proc

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def start(cfg: dict[str, Any]) -> proc.Proc:
    port = cfg["ports"]["aws"]
    cfg["aws_url"] = f"http://127.0.0.1:{port}"
    return proc.spawn("moto", [
        str(paths.VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port),
    ])


def healthy(cfg: dict[str, Any]) -> bool:
    with urllib.request.urlopen(f"{cfg['aws_url']}/moto-api/", timeout=2) as r:
        return bool(r.status == 200)


def reset(cfg: dict[str, Any]) -> None:
    """Forget every AWS object (POST /moto-api/reset)."""
    req = urllib.request.Request(f"{cfg['aws_url']}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=5):
        pass
