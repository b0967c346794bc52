"""AWS, GCP and Azure end to end: the controller runs as its ServiceAccount (deploy/ RBAC)
against the sandbox API server; an ExternalSecret on a store of each cloud backend becomes a
Secret, a rotation in the backend reaches the Secret within a refresh interval, and refused
credentials give a clear status. Nothing written to a backend may appear in the controller's
log, Events or statuses."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient
from google.cloud.secretmanager_v1 import SecretManagerServiceClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from secretsync.kube import Kube
from tests.integration import entra
from tests.integration._controller import CONTROLLER_NS, CONTROLLER_SA, Controller, install_rbac
from tests.integration._external import MARK, World

pytestmark = pytest.mark.integration

GCP_PROJECT = "secretsync-e2e"
AZ_TENANT = "00000000-0000-0000-0000-000000000000"  # named in the sandbox vault's challenge
AZ_CLIENT = "e2e0e2e0-0000-4000-8000-000000000001"
AZ_SECRET = f"client-secret-{MARK}"


@pytest.fixture(scope="module")
def admin(sandbox: Any, crds: list[str], k8s: Any) -> Kube:
    install_rbac(k8s)
    return Kube.from_config(str(sandbox.kubeconfig))


@pytest.fixture
def world(admin: Kube, namespace: str, tmp_path: Path, token_kubeconfig: Any) -> Iterator[World]:
    w = World(kube=admin, vault=None, namespace=namespace, mount="", vault_addr="", tmp=tmp_path)  # type: ignore[arg-type]  # no Vault in these tests
    kubeconfig = token_kubeconfig(CONTROLLER_NS, CONTROLLER_SA, tmp_path / "controller.kubeconfig")
    w.controller = Controller(kubeconfig, namespace, tmp_path / "controller.log")
    w.controller.start()
    try:
        yield w
        w.assert_no_leak()
        assert "Traceback" not in w.controller.log(), w.controller.tail()
    finally:
        w.controller.stop()


def k8s_secret(w: World, name: str, data: dict[str, bytes]) -> None:
    w.kube.create_secret(
        w.namespace,
        {
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        },
    )


def assert_backend_called(w: World, backend: str) -> None:
    assert w.controller is not None
    ok = w.controller.metric("secretsync_backend_calls_total", backend=backend, outcome="ok")
    assert ok > 0, f"no successful {backend} calls counted"


# --- AWS -----------------------------------------------------------------------------------


def test_aws_secrets_manager_and_parameter_store(
    world: World, sandbox: Any, name_prefix: str
) -> None:
    w, env = world, sandbox.env
    session = {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region_name": env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }
    sm, ssm = boto3.client("secretsmanager", **session), boto3.client("ssm", **session)
    k8s_secret(
        w,
        "aws-creds",
        {"id": env["AWS_ACCESS_KEY_ID"].encode(), "key": env["AWS_SECRET_ACCESS_KEY"].encode()},
    )
    auth = {
        "secretRef": {
            "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
            "secretAccessKeySecretRef": {"name": "aws-creds", "key": "key"},
        }
    }
    common = {"region": env["AWS_DEFAULT_REGION"], "endpoint": env["AWS_ENDPOINT_URL"]}
    w.apply_store("aws-sm", {"aws": {"service": "SecretsManager", **common, "auth": auth}})
    w.apply_store("aws-ps", {"aws": {"service": "ParameterStore", **common, "auth": auth}})
    # per-store IRSA: a TokenRequest token of the namespace's default ServiceAccount,
    # exchanged with STS for the role (no keys at all)
    irsa = {"jwt": {"serviceAccountRef": {"name": "default"}}}
    w.apply_store(
        "aws-irsa",
        {"aws": {**common, "role": "arn:aws:iam::123456789012:role/app", "auth": irsa}},
    )

    db, param = f"{name_prefix}/db", f"/{name_prefix}/app/token"
    one, two = f"one-{MARK}", f"two-{MARK}"
    w.values += [one, two]
    sm.create_secret(Name=db, SecretString=json.dumps({"user": "app", "password": one}))
    ssm.put_parameter(Name=param, Value=one, Type="SecureString")
    try:
        w.apply_es(
            "sm",
            {
                "secretStoreRef": {"name": "aws-sm"},
                "refreshInterval": "1s",
                "data": [{"secretKey": "pw", "remoteRef": {"key": db, "property": "password"}}],
                "dataFrom": [{"extract": {"key": db}}],
            },
        )
        w.apply_es(
            "ps",
            {
                "secretStoreRef": {"name": "aws-ps"},
                "refreshInterval": "1s",
                "dataFrom": [{"find": {"path": f"/{name_prefix}/app"}}],
            },
        )
        w.apply_es(
            "irsa",
            {
                "secretStoreRef": {"name": "aws-irsa"},
                "refreshInterval": "1h",
                "data": [{"secretKey": "user", "remoteRef": {"key": db, "property": "user"}}],
            },
        )
        w.wait_ready("sm")
        w.wait_ready("ps")
        w.wait_ready("irsa")
        w.wait_data("irsa", {"user": b"app"})
        w.wait_data("sm", {"pw": one.encode(), "user": b"app", "password": one.encode()})
        ps_key = param.replace("/", "_")
        w.wait_data("ps", {ps_key: one.encode()})

        sm.put_secret_value(SecretId=db, SecretString=json.dumps({"user": "app", "password": two}))
        ssm.put_parameter(Name=param, Value=two, Type="SecureString", Overwrite=True)
        start = time.monotonic()
        w.wait_data("sm", {"pw": two.encode(), "user": b"app", "password": two.encode()}, 15)
        w.wait_data("ps", {ps_key: two.encode()}, 15)
        assert time.monotonic() - start < 15
        assert_backend_called(w, "aws")
    finally:
        sm.delete_secret(SecretId=db, ForceDeleteWithoutRecovery=True)
        ssm.delete_parameter(Name=param)


# --- GCP -----------------------------------------------------------------------------------


def test_gcp_secret_manager(world: World, sandbox: Any, name_prefix: str) -> None:
    w = world
    endpoint = sandbox.env["GCP_SECRET_MANAGER_GRPC"]
    client = SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
    )
    w.apply_store("gcp", {"gcpsm": {"projectID": GCP_PROJECT, "endpoint": endpoint}})
    name = f"{name_prefix}-api"
    one, two = f"one-{MARK}", f"two-{MARK}"
    w.values += [one, two]
    secret = client.create_secret(
        parent=f"projects/{GCP_PROJECT}",
        secret_id=name,
        secret={"replication": {"automatic": {}}, "labels": {"e2e": name_prefix.lower()}},
    )
    try:
        client.add_secret_version(parent=secret.name, payload={"data": one.encode()})
        w.apply_es(
            "gcp",
            {
                "secretStoreRef": {"name": "gcp"},
                "refreshInterval": "1s",
                "data": [{"secretKey": "token", "remoteRef": {"key": name}}],
                "dataFrom": [{"find": {"tags": {"e2e": name_prefix.lower()}}}],
            },
        )
        w.wait_ready("gcp")
        w.wait_data("gcp", {"token": one.encode(), name: one.encode()})
        client.add_secret_version(parent=secret.name, payload={"data": two.encode()})
        w.wait_data("gcp", {"token": two.encode(), name: two.encode()}, 15)
        # disabling the newest version is reported, and the Secret keeps its last good data
        latest = client.access_secret_version(name=f"{secret.name}/versions/latest").name
        client.disable_secret_version(name=latest)
        es = w.wait_ready("gcp", status="False", timeout=15)
        cond = next(c for c in es["status"]["conditions"] if c["type"] == "Ready")
        assert name in cond["message"] and "DISABLED" in cond["message"], cond
        assert w.data("gcp") == {"token": two.encode(), name: two.encode()}
        assert_backend_called(w, "gcpsm")
    finally:
        client.delete_secret(name=secret.name)
        client.transport.close()


# --- Azure ---------------------------------------------------------------------------------


class _SeedToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("seed-token", int(time.time()) + 3600)


@pytest.fixture
def identity() -> Iterator[Any]:
    e = entra.start(entra.Entra(secrets={AZ_CLIENT: AZ_SECRET}))
    yield e
    e.stop()


def test_azure_key_vault(world: World, sandbox: Any, identity: Any, name_prefix: str) -> None:
    w = world
    vault = sandbox.env["AZURE_KEYVAULT_URL"]
    seed = SecretClient(
        vault,
        _SeedToken(),  # type: ignore[arg-type]
        api_version="7.6",
        verify_challenge_resource=False,
        connection_verify=str(sandbox.ca_file),
    )
    k8s_secret(
        w,
        "azure-sp",
        {"client-id": AZ_CLIENT.encode(), "client-secret": AZ_SECRET.encode(), "bad": b"wrong"},
    )
    w.values.append(AZ_SECRET)
    store = {
        "vaultUrl": vault,
        "tenantId": AZ_TENANT,
        "environmentType": "AzureStackCloud",
        "customCloudConfig": {"activeDirectoryEndpoint": identity.url},
        "caBundle": base64.b64encode(Path(sandbox.ca_file).read_bytes() + identity.ca_pem).decode(),
        "authSecretRef": {
            "clientId": {"name": "azure-sp", "key": "client-id"},
            "clientSecret": {"name": "azure-sp", "key": "client-secret"},
        },
    }
    bad = {
        **store,
        "authSecretRef": {
            **store["authSecretRef"],
            "clientSecret": {"name": "azure-sp", "key": "bad"},
        },
    }
    w.apply_store("azure", {"azurekv": store})
    w.apply_store("azure-bad", {"azurekv": bad})
    name = f"{name_prefix}-db"
    one, two = f"one-{MARK}", f"two-{MARK}"
    w.values += [one, two]
    seed.set_secret(name, json.dumps({"password": one}), tags={"e2e": name_prefix})
    try:
        w.apply_es(
            "az",
            {
                "secretStoreRef": {"name": "azure"},
                "refreshInterval": "1s",
                "data": [{"secretKey": "pw", "remoteRef": {"key": name, "property": "password"}}],
            },
        )
        w.wait_ready("az")
        w.wait_data("az", {"pw": one.encode()})
        seed.set_secret(name, json.dumps({"password": two}), tags={"e2e": name_prefix})
        w.wait_data("az", {"pw": two.encode()}, 15)
        assert_backend_called(w, "azurekv")
        # refused credentials: a clear condition, no Secret, no leak (checked at teardown)
        w.apply_es(
            "az-bad",
            {
                "secretStoreRef": {"name": "azure-bad"},
                "refreshInterval": "1h",
                "data": [{"secretKey": "pw", "remoteRef": {"key": name, "property": "password"}}],
            },
        )
        es = w.wait_ready("az-bad", status="False", timeout=30)
        cond = next(c for c in es["status"]["conditions"] if c["type"] == "Ready")
        assert "Azure authentication failed" in cond["message"], cond
        assert w.secret("az-bad") is None
    finally:
        seed.begin_delete_secret(name).wait()
        seed.purge_deleted_secret(name)
        seed.close()
