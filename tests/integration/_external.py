"""Helpers for ExternalSecret integration tests: a namespace with a Vault SecretStore, a
controller running as its ServiceAccount, and small wait/read helpers (admin client)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import hvac
import pytest

from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import CONTROLLER_NS, CONTROLLER_SA, Controller

T = TypeVar("T")
# Every value written to Vault by these tests contains this marker, so leak checks can grep.
MARK = "plaintext-Marker-7f3e"


def wait_for(
    what: str, fn: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(
        f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})", pytrace=False
    )


@dataclass
class World:
    kube: Kube
    vault: hvac.Client
    namespace: str
    mount: str
    vault_addr: str
    tmp: Path
    controller: Controller | None = None
    values: list[str] = field(default_factory=list)

    # --- Vault ---------------------------------------------------------------------------
    def put(self, path: str, data: dict[str, Any], mount: str | None = None) -> int:
        for v in data.values():
            if isinstance(v, str) and MARK in v:
                self.values.append(v)
        resp = self.vault.secrets.kv.v2.create_or_update_secret(
            path, data, mount_point=mount or self.mount
        )
        return int(resp["data"]["version"])

    # --- Kubernetes ----------------------------------------------------------------------
    def apply_store(
        self,
        name: str = "vault",
        provider: dict[str, Any] | None = None,
        cluster: bool = False,
        conditions: list[Any] | None = None,
    ) -> None:
        provider = provider or {
            "vault": {
                "server": self.vault_addr,
                "path": self.mount,
                "auth": {
                    "tokenSecretRef": {
                        "name": "vault-token",
                        "key": "token",
                        **({"namespace": self.namespace} if cluster else {}),
                    }
                },
            }
        }
        spec: dict[str, Any] = {"provider": provider}
        if conditions is not None:
            spec["conditions"] = conditions
        kind = api.KIND_CLUSTER_STORE if cluster else api.KIND_STORE
        plural = api.PLURAL_CLUSTER_STORE if cluster else api.PLURAL_STORE
        self.kube.apply(
            {
                "apiVersion": api.API_VERSION,
                "kind": kind,
                "metadata": {"name": name, **({} if cluster else {"namespace": self.namespace})},
                "spec": spec,
            },
            plural=plural,
        )

    def apply_es(
        self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        spec = {"secretStoreRef": {"name": "vault"}, **spec}
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if annotations:
            meta["annotations"] = annotations
        return self.kube.apply(
            {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND_EXTERNAL,
                "metadata": meta,
                "spec": spec,
            },
            plural=api.PLURAL_EXTERNAL,
        )

    def es(self, name: str) -> dict[str, Any]:
        obj = self.kube.get_custom(
            api.GROUP, api.VERSION, api.PLURAL_EXTERNAL, self.namespace, name
        )
        assert obj is not None, f"ExternalSecret {name} missing"
        return obj

    def ready(self, name: str) -> dict[str, str] | None:
        for c in (self.es(name).get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready":
                return dict(c)
        return None

    def wait_ready(
        self, name: str, status: str = "True", reason: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            c = self.ready(name)
            if c and c["status"] == status and (reason is None or c.get("reason") == reason):
                return self.es(name)
            return None

        try:
            return wait_for(f"ExternalSecret {name} Ready={status} {reason or ''}", check, timeout)
        except pytest.fail.Exception:
            tail = self.controller.tail() if self.controller else ""
            pytest.fail(
                f"ExternalSecret {name} not Ready={status} {reason or ''}: "
                f"{self.ready(name)}\ncontroller log:\n{tail}",
                pytrace=False,
            )

    def secret(self, name: str) -> dict[str, Any] | None:
        return self.kube.get_secret(self.namespace, name)

    def data(self, name: str) -> dict[str, bytes]:
        s = self.secret(name)
        assert s is not None, f"Secret {name} missing"
        return {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}

    def wait_data(self, name: str, want: dict[str, bytes], timeout: float = 30.0) -> None:
        def check() -> bool:
            s = self.secret(name)
            return (
                s is not None
                and {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()} == want
            )

        wait_for(f"Secret {name} data", check, timeout)

    def events(self) -> list[dict[str, Any]]:
        return self.kube.list_events(self.namespace)

    def assert_no_leak(self) -> None:
        """No value written to Vault appears in the controller log, Events or statuses."""
        texts = [str(e.get("message")) for e in self.events()]
        for plural in (api.PLURAL_EXTERNAL, api.PLURAL_STORE):
            for obj in self.kube.list_custom(api.GROUP, api.VERSION, plural, self.namespace):
                texts.append(repr(obj.get("status")))
                texts.append(repr((obj.get("metadata") or {}).get("annotations")))
        if self.controller is not None:
            texts.append(self.controller.log())
        blob = "\n".join(texts)
        assert MARK not in blob, "a secret value leaked into logs, events or status"
        for v in self.values:
            assert v not in blob


def make_world(
    admin: Kube,
    vault: hvac.Client,
    *,
    namespace: str,
    mount: str,
    vault_addr: str,
    tmp: Path,
    token: str | None,
) -> World:
    """A World for ``namespace``; with ``token``, also the Secret ``vault-token`` that the
    default store (``World.apply_store``) authenticates with."""
    w = World(
        kube=admin, vault=vault, namespace=namespace, mount=mount, vault_addr=vault_addr, tmp=tmp
    )
    if token is not None:
        admin.create_secret(
            namespace,
            {
                "metadata": {"name": "vault-token"},
                "data": {"token": base64.b64encode(token.encode()).decode()},
            },
        )
    return w


def sandbox_world(
    sandbox: Any, admin: Kube, namespace: str, mount: str, tmp: Path, *, token_secret: bool = True
) -> World:
    """``make_world`` against the sandbox's shared OpenBao (root token)."""
    env = sandbox.env
    return make_world(
        admin,
        hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"]),
        namespace=namespace,
        mount=mount,
        vault_addr=env["VAULT_ADDR"],
        tmp=tmp,
        token=env["VAULT_TOKEN"] if token_secret else None,
    )


def controller_kubeconfig(w: World, token_kubeconfig: Any) -> Path:
    """A kubeconfig authenticating as the controller's ServiceAccount."""
    path: Path = token_kubeconfig(CONTROLLER_NS, CONTROLLER_SA, w.tmp / "ctl.kubeconfig")
    return path


@contextmanager
def running_controller(
    w: World, token_kubeconfig: Any, *, before_start: Callable[[], None] | None = None
) -> Iterator[World]:
    """Run the controller as its ServiceAccount, watching ``w.namespace``; on a clean exit,
    check that no value leaked and that the controller logged no traceback."""
    w.controller = Controller(
        controller_kubeconfig(w, token_kubeconfig), w.namespace, w.tmp / "controller.log"
    )
    if before_start is not None:
        before_start()
    w.controller.start()
    try:
        yield w
        w.assert_no_leak()
        assert "Traceback" not in w.controller.log(), w.controller.tail()
    finally:
        w.controller.stop()
        w.kube.delete_secret(CONTROLLER_NS, hash_key_secret(w.controller))


def hash_key_secret(controller: Controller) -> str:
    """The Secret holding that controller's data-hash key (in ``CONTROLLER_NS``)."""
    return f"{controller.name}{api.HASH_KEY_SECRET_SUFFIX}"
