"""The Azure Key Vault emulator process (see `sandbox.azure_emulator`), HTTPS with a cert from
the sandbox CA (clients verify with `Sandbox.ca_file`, or pass `connection_verify=False`)."""

from __future__ import annotations

import ssl
import urllib.request
from typing import Any

from sandbox import paths, proc
from sandbox.pki import PKI


def start(cfg: dict[str, Any]) -> proc.Proc:
    port = cfg["ports"]["azure"]
    cfg["azure_url"] = f"https://127.0.0.1:{port}"
    pki = PKI(paths.STATE / "pki")
    pki.load()
    cert, key = pki.issue("keyvault", "keyvault", server_hosts=["127.0.0.1", "localhost"])
    return proc.spawn("azure-kv-emulator", [
        str(paths.VENV_BIN / "python"), "-m", "sandbox.azure_emulator", "--port", str(port),
        "--cert", str(cert), "--key", str(key),
    ], cwd=paths.REPO)


def healthy(cfg: dict[str, Any]) -> bool:
    ctx = ssl.create_default_context(cafile=cfg["kube"]["ca_file"])
    req = urllib.request.Request(f"{cfg['azure_url']}/secrets?api-version=7.6")
    try:
        urllib.request.urlopen(req, timeout=2, context=ctx)
    except urllib.error.HTTPError as e:
        return e.code == 401 and "Bearer" in e.headers.get("WWW-Authenticate", "")
    return False
