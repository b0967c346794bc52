"""etcd, the API server's store: one member on loopback, fsync off (throwaway data)."""

from __future__ import annotations

import urllib.request
from typing import Any

from sandbox import builder, paths, proc


def start(cfg: dict[str, Any]) -> proc.Proc:
    binary = builder.ensure_etcd()
    port, peer = cfg["ports"]["etcd"], cfg["ports"]["etcd_peer"]
    url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
    cfg["etcd_url"] = url
    return proc.spawn("etcd", [
        str(binary),
        "--name=sandbox",
        f"--data-dir={paths.STATE / 'etcd'}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=sandbox={peer_url}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ])


def healthy(cfg: dict[str, Any]) -> bool:
    with urllib.request.urlopen(f"{cfg['etcd_url']}/health", timeout=2) as r:
        return b'"health":"true"' in r.read()
