"""Fixtures for tests that need the local sandbox (real kube-apiserver and secret backends).

The session fixture `sandbox` reuses a sandbox started by `make dev` when every component is
healthy, else starts one itself (and stops it at the end, unless another pytest session is
still using it or `make dev` has been run for it meanwhile). A component that cannot start
FAILS the test with that component's log tail: these tests never skip. Per-test fixtures hand
out fresh names (namespace, Vault mount, cloud secret name prefix) so tests do not interfere
and run in any order.

Fixtures: `sandbox`, `k8s`, `namespace`, `crds`, `vault_mount`, `name_prefix`,
`token_kubeconfig`, `kubeseal_bin` (see README, Development).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox import builder, launcher, paths, proc
from sandbox.kube import write_kubeconfig

REPO = Path(__file__).resolve().parent.parent


def _unique(prefix: str, hint: str = "", length: int = 40) -> str:
    """`prefix-hint-hex`: DNS-label safe, lower case, at most `length` characters."""
    tag = uuid.uuid4().hex[:8]
    hint = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")
    room = length - len(prefix) - len(tag) - 2
    hint = hint[:room].strip("-") if room > 0 else ""
    return f"{prefix}-{hint}-{tag}" if hint else f"{prefix}-{tag}"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[launcher.Sandbox]:
    """The running sandbox; sets its variables (KUBECONFIG, VAULT_ADDR, ...) in os.environ."""
    paths.DEV.mkdir(parents=True, exist_ok=True)
    users = open(paths.DEV / "users.lock", "w")
    fcntl.flock(users, fcntl.LOCK_SH)
    failure = None
    try:
        sb = launcher.running() or launcher.up()
    except (proc.ComponentError, builder.BuildError) as exc:
        failure = f"sandbox could not start: {exc}"
    if failure is not None:
        users.close()
        pytest.fail(failure, pytrace=False)
    saved = {k: os.environ.get(k) for k in sb.env}
    os.environ.update(sb.env)
    try:
        yield sb
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        fcntl.flock(users, fcntl.LOCK_UN)
        if sb.started and not launcher.PIN_FILE.exists():
            try:
                # stop only if no other pytest session holds it
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                launcher.down()
        users.close()


@pytest.fixture(scope="session")
def k8s(sandbox: launcher.Sandbox) -> Iterator[Any]:
    """An admin `kubernetes.client.ApiClient` (system:masters) for the sandbox."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(k8s: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (in the background) afterwards."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = _unique("t", request.node.name)
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def apply_crds(k8s: Any, files: list[Path], timeout: float = 30.0) -> list[str]:
    """Create or replace every CustomResourceDefinition in `files`; wait until Established."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(k8s)
    names = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                current = ext.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = current.metadata.resource_version
                ext.replace_custom_resource_definition(name, doc)
            names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                pytest.fail(f"CRD {name} not Established after {timeout:.0f}s: {conds}",
                            pytrace=False)
            time.sleep(0.1)
    return names


@pytest.fixture(scope="session")
def crds(k8s: Any) -> list[str]:
    """Applies every `crds/*.yaml` of the repo; the names of the CRDs, all Established."""
    files = sorted((REPO / "crds").glob("*.yaml"))
    if not files:
        pytest.fail("no crds/*.yaml in the repository", pytrace=False)
    return apply_crds(k8s, files)


@pytest.fixture
def vault_mount(sandbox: launcher.Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh KV v2 mount path in OpenBao (root token in VAULT_TOKEN); disabled afterwards."""
    import hvac

    path = _unique("kv", request.node.name)
    vault = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])
    vault.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
    yield path
    vault.sys.disable_secrets_engine(path)


@pytest.fixture
def name_prefix() -> str:
    """A unique prefix for AWS/GCP/Azure secret names (letters, digits, dashes; ends in '-')."""
    return f"t-{uuid.uuid4().hex[:10]}-"


TokenKubeconfig = Callable[..., Path]


@pytest.fixture(scope="session")
def token_kubeconfig(sandbox: launcher.Sandbox, k8s: Any) -> TokenKubeconfig:
    """`token_kubeconfig(namespace, service_account, path, expiration_seconds=3600) -> path`:
    writes a kubeconfig that authenticates with a TokenRequest token for that ServiceAccount
    (created if missing), so code runs with exactly the RBAC granted to it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(k8s)

    def make(namespace: str, service_account: str, path: Path | str,
             expiration_seconds: int = 3600) -> Path:
        try:
            core.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(
                    metadata=client.V1ObjectMeta(name=service_account)))
        except ApiException as exc:
            if exc.status != 409:
                raise
        req = core.create_namespaced_service_account_token(
            service_account, namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[],
                                               expiration_seconds=expiration_seconds)),
        )
        return write_kubeconfig(Path(path), sandbox.server, sandbox.ca_file,
                                token=req.status.token, user=service_account,
                                namespace=namespace)

    return make


@pytest.fixture(scope="session")
def kubeseal_bin() -> Path:
    """Bitnami's `kubeseal` CLI (built into the cache on first use)."""
    try:
        return builder.ensure_kubeseal()
    except builder.BuildError as exc:
        failure = f"kubeseal could not be built: {exc}"
    pytest.fail(failure, pytrace=False)
