"""Backend down and back: a private OpenBao (its own process and port, so the shared one is
never stopped) is killed while ExternalSecrets refresh every second: the Secrets are kept
untouched, Ready turns False with a reason, the store is not hammered; when OpenBao is back,
everything recovers without rewriting the unchanged Secrets."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from secretsync.kube import Kube
from tests.integration._controller import (
    REPO,
    free_port,
    install_rbac,
)
from tests.integration._external import (
    MARK,
    World,
    make_world,
    running_controller,
    wait_for,
)

pytestmark = pytest.mark.integration

BAO = REPO / ".venv" / "bin" / "bao"


class PrivateBao:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.token = f"root-{uuid.uuid4().hex}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> hvac.Client:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BAO),
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.token}",
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        c = hvac.Client(url=self.addr, token=self.token)

        def up() -> bool:
            try:
                return bool(c.sys.is_initialized()) and not c.sys.is_sealed()
            except Exception:
                if self.proc is not None and self.proc.poll() is not None:
                    pytest.fail(
                        f"private OpenBao exited:\n{self.log.read_text()[-2000:]}", pytrace=False
                    )
                return False

        wait_for("private OpenBao", up, 30, 0.1)
        return c

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[PrivateBao]:
    b = PrivateBao(tmp_path / "bao.log")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def world(
    sandbox: Any,
    k8s: Any,
    crds: list[str],
    namespace: str,
    tmp_path: Path,
    token_kubeconfig: Any,
    bao: PrivateBao,
) -> Iterator[World]:
    install_rbac(k8s)
    vault = bao.start()
    admin = Kube.from_config(str(sandbox.kubeconfig))
    w = make_world(
        admin,
        vault,
        namespace=namespace,
        mount="secret",
        vault_addr=bao.addr,
        tmp=tmp_path,
        token=bao.token,
    )
    with running_controller(w, token_kubeconfig):
        yield w


def test_backend_down_keeps_secrets_and_recovers(world: World, bao: PrivateBao) -> None:
    w = world
    assert w.controller is not None
    w.apply_store()
    values = {f"k{i}": f"v{i}-{MARK}" for i in range(3)}
    w.put("app", values)
    for i in range(3):
        w.apply_es(
            f"es{i}",
            {
                "refreshInterval": "1s",
                "data": [{"secretKey": "v", "remoteRef": {"key": "app", "property": f"k{i}"}}],
            },
        )
    for i in range(3):
        w.wait_ready(f"es{i}")
        w.wait_data(f"es{i}", {"v": values[f"k{i}"].encode()})
    rvs = {i: w.secret(f"es{i}")["metadata"]["resourceVersion"] for i in range(3)}  # type: ignore[index]

    bao.stop()
    down_at = w.controller.metric("secretsync_backend_calls_total", backend="vault")
    for i in range(3):
        es = wait_for(
            f"es{i} not ready",
            lambda i=i: (w.ready(f"es{i}") or {}).get("status") == "False" and w.ready(f"es{i}"),
            20,
        )
        assert es["reason"] in ("BackendUnavailable", "StoreNotReady"), es
        assert "connect" in es["message"]
    time.sleep(6)
    for i in range(3):
        s = w.secret(f"es{i}")
        assert s is not None and s["metadata"]["resourceVersion"] == rvs[i], "Secret kept as is"
    calls_while_down = (
        w.controller.metric("secretsync_backend_calls_total", backend="vault") - down_at
    )
    # 3 objects x 1 s refresh x ~8 s would be ~24 calls without the store's backoff
    assert calls_while_down <= 8, calls_while_down
    store = w.kube.get_custom("secretsync.io", "v1alpha1", "secretstores", w.namespace, "vault")
    assert (store or {})["status"]["conditions"][0]["status"] == "False"

    # back (a dev server starts empty: put the same data back)
    w.vault = bao.start()
    w.put("app", values)
    for i in range(3):
        w.wait_ready(f"es{i}", timeout=60)
    for i in range(3):
        s = w.secret(f"es{i}")
        assert s is not None and s["metadata"]["resourceVersion"] == rvs[i], (
            "unchanged data: recovery writes nothing"
        )
    wait_for(
        "store ready again",
        lambda: (
            (
                w.kube.get_custom("secretsync.io", "v1alpha1", "secretstores", w.namespace, "vault")
                or {}
            )
            .get("status", {})
            .get("conditions", [{}])[0]
            .get("status")
            == "True"
        ),
        30,
    )
