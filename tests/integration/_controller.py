"""Run the real controller as a subprocess, as its ServiceAccount with the RBAC from deploy/.

``install_rbac(k8s)`` applies deploy/{namespace,serviceaccount,rbac,rbac-external}.yaml;
``Controller`` starts ``python -m secretsync controller`` with a TokenRequest kubeconfig for
``secretsync/secretsync-controller`` (so it has exactly the deployed permissions), watching
one namespace and using its own Lease name, so tests running in parallel do not fight.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONTROLLER_NS = "secretsync"
CONTROLLER_SA = "secretsync-controller"
RBAC_FILES = ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "rbac-external.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_rbac(k8s: Any) -> None:
    """Create or replace the deploy/ objects the controller needs (idempotent)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core, rbac = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s)
    ops: dict[str, tuple[Any, Any]] = {
        "Namespace": (lambda d: core.create_namespace(d), None),
        "ServiceAccount": (
            lambda d: core.create_namespaced_service_account(d["metadata"]["namespace"], d),
            None,
        ),
        "ClusterRole": (
            lambda d: rbac.create_cluster_role(d),
            lambda d: rbac.replace_cluster_role(d["metadata"]["name"], d),
        ),
        "ClusterRoleBinding": (
            lambda d: rbac.create_cluster_role_binding(d),
            lambda d: rbac.replace_cluster_role_binding(d["metadata"]["name"], d),
        ),
        "Role": (
            lambda d: rbac.create_namespaced_role(d["metadata"]["namespace"], d),
            lambda d: rbac.replace_namespaced_role(
                d["metadata"]["name"], d["metadata"]["namespace"], d
            ),
        ),
        "RoleBinding": (
            lambda d: rbac.create_namespaced_role_binding(d["metadata"]["namespace"], d),
            lambda d: rbac.replace_namespaced_role_binding(
                d["metadata"]["name"], d["metadata"]["namespace"], d
            ),
        ),
    }
    for name in RBAC_FILES:
        for doc in yaml.safe_load_all((REPO / "deploy" / name).read_text()):
            if not doc:
                continue
            create, replace = ops[doc["kind"]]
            if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                doc["metadata"].setdefault("namespace", CONTROLLER_NS)
            try:
                create(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                if replace is not None:
                    replace(doc)


class Controller:
    """One controller process. ``start()`` waits until it logs "controller ready"."""

    def __init__(
        self,
        kubeconfig: Path,
        watch_namespace: str | None,
        log_path: Path,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        name: str | None = None,
        *,
        http_host: str = "127.0.0.1",
        controller_namespace: str = CONTROLLER_NS,
    ) -> None:
        self.kubeconfig = kubeconfig
        # a non-loopback host lets the API server's service proxy reach it (test_service_proxy)
        self.http_host = http_host
        self.controller_namespace = controller_namespace
        self.watch_namespace = watch_namespace
        self.log_path = log_path
        self.http_port = free_port()
        # a restart of "the same" controller passes the first one's name (its Lease, cert
        # ConfigMap and data-hash key Secret are named after it)
        self.name = name or f"test-{uuid.uuid4().hex[:8]}"
        self.extra_args = extra_args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Controller:
        cmd = [
            sys.executable,
            "-m",
            "secretsync",
            "controller",
            "--kubeconfig",
            str(self.kubeconfig),
            "--controller-namespace",
            self.controller_namespace,
            "--controller-name",
            self.name,
            "--http-host",
            self.http_host,
            "--http-port",
            str(self.http_port),
            "--key-bits",
            "2048",
            "--log-level",
            "DEBUG",
            *self.extra_args,
        ]
        if self.watch_namespace:
            cmd += ["--namespace", self.watch_namespace]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("KUBECONFIG", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "controller ready" in self.log():
                return self
            if self.proc.poll() is not None:
                pytest.fail(
                    f"controller exited {self.proc.returncode}:\n{self.tail()}", pytrace=False
                )
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"controller not ready after {timeout:.0f}s:\n{self.tail()}", pytrace=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def metrics(self) -> str:
        url = f"http://{self.http_host}:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
