"""ClusterSecretStore: spec.conditions decide which namespaces may use it (names, regexes,
label selectors); a refused namespace gets a clear condition and nothing is fetched. Credential
references without a namespace resolve in the ExternalSecret's namespace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secretsync import api
from secretsync.kube import Kube
from tests.integration._controller import install_rbac
from tests.integration._external import MARK, World, running_controller, sandbox_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(
    sandbox: Any,
    k8s: Any,
    crds: list[str],
    namespace: str,
    vault_mount: str,
    tmp_path: Path,
    token_kubeconfig: Any,
) -> Iterator[World]:
    install_rbac(k8s)
    admin = Kube.from_config(str(sandbox.kubeconfig))
    w = sandbox_world(sandbox, admin, namespace, vault_mount, tmp_path)
    with running_controller(w, token_kubeconfig):
        yield w


@pytest.fixture
def css_name(world: World) -> Iterator[str]:
    name = f"css-{uuid.uuid4().hex[:8]}"
    yield name
    world.kube.delete_custom(api.GROUP, api.VERSION, api.PLURAL_CLUSTER_STORE, None, name)


def test_namespace_conditions(world: World, css_name: str) -> None:
    w = world
    assert w.controller is not None
    w.put("shared", {"v": f"cs-{MARK}"})
    w.apply_store(
        css_name,
        cluster=True,
        conditions=[{"namespaces": ["somebody-else"]}, {"namespaceRegexes": ["^prod-"]}],
    )
    w.apply_es(
        "app",
        {
            "secretStoreRef": {"name": css_name, "kind": "ClusterSecretStore"},
            "refreshInterval": "1s",
            "data": [{"secretKey": "v", "remoteRef": {"key": "shared", "property": "v"}}],
        },
    )
    es = w.wait_ready("app", "False", "NamespaceNotAllowed")
    assert w.namespace in es["status"]["conditions"][0]["message"]
    assert w.secret("app") is None
    assert (
        w.controller.metric("secretsync_backend_calls_total", backend="vault", operation="get") == 0
    ), "nothing fetched for a refused namespace"
    # allow by label selector: label the namespace, then change the store
    w.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{w.namespace}",
        {"metadata": {"labels": {"secrets-team": "gold"}}},
        content_type="application/merge-patch+json",
    )
    w.apply_store(
        css_name,
        cluster=True,
        conditions=[{"namespaceSelector": {"matchLabels": {"secrets-team": "gold"}}}],
    )
    w.wait_ready("app", timeout=20)
    assert w.data("app") == {"v": f"cs-{MARK}".encode()}


def test_refs_without_namespace_resolve_in_reader_namespace(world: World, css_name: str) -> None:
    w = world
    w.put("shared", {"v": f"ns-{MARK}"})
    w.apply_store(
        css_name,
        {
            "vault": {
                "server": w.vault_addr,
                "path": w.mount,
                "auth": {"tokenSecretRef": {"name": "vault-token", "key": "token"}},
            }
        },
        cluster=True,
    )
    w.apply_es(
        "app",
        {
            "secretStoreRef": {"name": css_name, "kind": "ClusterSecretStore"},
            "data": [{"secretKey": "v", "remoteRef": {"key": "shared", "property": "v"}}],
        },
    )
    w.wait_ready("app")
    assert w.data("app") == {"v": f"ns-{MARK}".encode()}
