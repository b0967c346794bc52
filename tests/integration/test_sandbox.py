"""The sandbox itself behaves like the real things the project targets.

RBAC is enforced, ServiceAccount tokens are issued and reviewed, CRDs apply and serve, the
controller-manager garbage-collects owned objects and deletes namespaces, every server listens
on loopback only, and each backend round-trips a value through its official Python SDK.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from sandbox import launcher, proc
from tests.conftest import apply_crds

pytestmark = pytest.mark.integration


def _eventually(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(0.2)


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_serviceaccount_without_rights_gets_403_until_granted(
    k8s: Any, namespace: str, token_kubeconfig: Callable[..., Path], tmp_path: Path
) -> None:
    kc = token_kubeconfig(namespace, "nobody", tmp_path / "kubeconfig")
    sa_api = config.new_client_from_config(config_file=str(kc))
    as_sa = client.CoreV1Api(sa_api)
    with pytest.raises(ApiException) as denied:
        as_sa.list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in str(denied.value.body)

    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "read-secrets"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
    })
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "nobody-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "read-secrets"},
        "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
    })

    def allowed() -> bool:
        try:
            as_sa.list_namespaced_secret(namespace)
        except ApiException as exc:
            if exc.status == 403:
                return False
            raise
        return True

    _eventually(allowed, 10, "the RoleBinding to take effect")
    # still denied outside what was granted
    with pytest.raises(ApiException) as other:
        as_sa.list_namespaced_config_map(namespace)
    assert other.value.status == 403
    sa_api.close()


def test_tokenreview_accepts_issued_token_and_rejects_garbage(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reviewed"}})
    token = core.create_namespaced_service_account_token(
        "reviewed", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token
    authn = client.AuthenticationV1Api(k8s)
    good = authn.create_token_review({"spec": {"token": token}}).status
    assert good.authenticated is True
    assert good.user.username == f"system:serviceaccount:{namespace}:reviewed"
    bad = authn.create_token_review({"spec": {"token": token[:-4] + "AAAA"}}).status
    assert not bad.authenticated


def test_custom_resource_definition_applies_and_serves(
    k8s: Any, namespace: str, tmp_path: Path
) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.sandbox.test"
    crd_file = tmp_path / "crd.yaml"
    crd_file.write_text(f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties: {{size: {{type: integer, minimum: 1}}}}
""")
    assert apply_crds(k8s, [crd_file]) == [f"widgets.{group}"]
    try:
        custom = client.CustomObjectsApi(k8s)
        obj = {"apiVersion": f"{group}/v1", "kind": "Widget",
               "metadata": {"name": "w1"}, "spec": {"size": 3}}
        custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", obj)
        got = custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")
        assert got["spec"] == {"size": 3}
        # the schema is enforced by the server
        with pytest.raises(ApiException) as invalid:
            custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", {
                **obj, "metadata": {"name": "w2"}, "spec": {"size": 0}})
        assert invalid.value.status == 422
        # applying the same file again is an update, not an error
        assert apply_crds(k8s, [crd_file]) == [f"widgets.{group}"]
    finally:
        client.ApiextensionsV1Api(k8s).delete_custom_resource_definition(f"widgets.{group}")


def test_secret_owned_by_deleted_object_is_garbage_collected(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "owned", "ownerReferences": [ref]}, "stringData": {"k": "v"}})
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "unowned"}, "stringData": {"k": "v"}})
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    _eventually(lambda: _gone(lambda: core.read_namespaced_secret("owned", namespace)),
                60, "the garbage collector to delete the owned Secret")
    assert core.read_namespaced_secret("unowned", namespace).metadata.name == "unowned"


def test_deleted_namespace_is_emptied_and_removed(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    name = f"t-del-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(name, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    core.delete_namespace(name)
    _eventually(lambda: _gone(lambda: core.read_namespace(name)), 60,
                "the namespace controller to remove the namespace")


def test_every_server_listens_on_loopback_only(sandbox: launcher.Sandbox) -> None:
    ports = {int(p) for p in sandbox.cfg["ports"].values()}
    listening: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            addr, port = fields[1].rsplit(":", 1)
            listening.setdefault(int(port, 16), set()).add(addr)
    # 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net spells them
    loopback = {"0100007F", "00000000000000000000000001000000",
                "0000000000000000FFFF00000100007F"}
    assert ports - {sandbox.cfg["ports"]["etcd_peer"]} <= set(listening), (
        f"not listening: {sorted(ports - set(listening))}")
    for port in ports & set(listening):
        assert listening[port] <= loopback, f"port {port} listens on {listening[port]}"
    assert all(p.alive() for p in proc.recorded())


def test_vault_kv2_round_trip_with_hvac(sandbox: launcher.Sandbox, vault_mount: str) -> None:
    import hvac

    vault = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret("app/db", {"password": "s3cr3t"}, mount_point=vault_mount)
    kv.create_or_update_secret("app/db", {"password": "rotated"}, mount_point=vault_mount)
    latest = kv.read_secret_version("app/db", mount_point=vault_mount,
                                    raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"password": "rotated"}
    assert latest["data"]["metadata"]["version"] == 2
    first = kv.read_secret_version("app/db", version=1, mount_point=vault_mount,
                                   raise_on_deleted_version=True)
    assert first["data"]["data"] == {"password": "s3cr3t"}


def test_vault_kubernetes_auth_uses_apiserver_tokenreview(
    sandbox: launcher.Sandbox, k8s: Any, namespace: str
) -> None:
    import hvac

    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    client.RbacAuthorizationV1Api(k8s).create_cluster_role_binding({
        "metadata": {"name": f"{namespace}-reviewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}],
    })
    try:
        jwt = core.create_namespaced_service_account_token(
            "app", namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}).status.token
        vault = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"])
        mount = f"k8s-{namespace}"
        vault.sys.enable_auth_method("kubernetes", path=mount)
        vault.auth.kubernetes.configure(
            kubernetes_host=sandbox.server, kubernetes_ca_cert=sandbox.ca_file.read_text(),
            mount_point=mount,
        )
        vault.auth.kubernetes.create_role(
            "app", bound_service_account_names=["app"],
            bound_service_account_namespaces=[namespace], policies=["default"],
            mount_point=mount,
        )
        login = hvac.Client(url=sandbox.env["VAULT_ADDR"])
        auth = login.auth.kubernetes.login("app", jwt, mount_point=mount)
        assert auth["auth"]["metadata"]["service_account_namespace"] == namespace
        with pytest.raises(hvac.exceptions.VaultError):
            hvac.Client(url=sandbox.env["VAULT_ADDR"]).auth.kubernetes.login(
                "app", jwt[:-4] + "AAAA", mount_point=mount)
        vault.sys.disable_auth_method(mount)
    finally:
        client.RbacAuthorizationV1Api(k8s).delete_cluster_role_binding(f"{namespace}-reviewer")


def test_aws_secretsmanager_and_ssm_round_trip_with_boto3(
    sandbox: launcher.Sandbox, name_prefix: str
) -> None:
    import boto3

    sm = boto3.client("secretsmanager")  # endpoint, keys and region from the sandbox env
    name = f"{name_prefix}db"
    sm.create_secret(Name=name, SecretString='{"password":"one"}')
    sm.put_secret_value(SecretId=name, SecretString='{"password":"two"}')
    assert sm.get_secret_value(SecretId=name)["SecretString"] == '{"password":"two"}'
    previous = sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == '{"password":"one"}'

    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=f"/{name_prefix}app/token", Value="tok", Type="SecureString")
    got = ssm.get_parameter(Name=f"/{name_prefix}app/token", WithDecryption=True)
    assert got["Parameter"]["Value"] == "tok"
    assert sm.meta.endpoint_url == sandbox.env["AWS_ENDPOINT_URL"]


def test_gcp_secret_manager_round_trip_over_insecure_grpc(
    sandbox: launcher.Sandbox, name_prefix: str
) -> None:
    import grpc
    from google.api_core import exceptions as gexc
    from google.cloud import secretmanager
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(sandbox.env["GCP_SECRET_MANAGER_GRPC"])
    sm = secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel))
    secret = sm.create_secret(request={
        "parent": "projects/sandbox", "secret_id": f"{name_prefix}api",
        "secret": {"replication": {"automatic": {}}, "labels": {"team": "x"}}})
    sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"v1"}})
    v2 = sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"v2"}})
    got = sm.access_secret_version(request={"name": f"{secret.name}/versions/latest"})
    assert got.payload.data == b"v2"
    assert got.name == v2.name
    sm.disable_secret_version(request={"name": v2.name})
    with pytest.raises(gexc.FailedPrecondition):
        sm.access_secret_version(request={"name": v2.name})
    with pytest.raises(gexc.NotFound):
        sm.get_secret(request={"name": f"projects/sandbox/secrets/{name_prefix}missing"})
    channel.close()


def test_azure_key_vault_round_trip_with_secret_client(
    sandbox: launcher.Sandbox, name_prefix: str
) -> None:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ResourceNotFoundError
    from azure.keyvault.secrets import SecretClient

    class DummyCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("sandbox-token", int(time.time()) + 3600)

    kv = SecretClient(sandbox.env["AZURE_KEYVAULT_URL"], DummyCredential(),  # type: ignore[arg-type]
                      api_version="7.6", verify_challenge_resource=False,
                      connection_verify=str(sandbox.ca_file))
    name = f"{name_prefix}conn"
    first = kv.set_secret(name, "one", content_type="text/plain", tags={"env": "test"})
    kv.set_secret(name, "two")
    assert kv.get_secret(name).value == "two"
    assert kv.get_secret(name, first.properties.version).value == "one"
    assert first.properties.tags == {"env": "test"}
    kv.begin_delete_secret(name).result()
    with pytest.raises(ResourceNotFoundError):
        kv.get_secret(name)
    kv.purge_deleted_secret(name)


def test_component_that_dies_fails_with_its_log_tail() -> None:
    name = f"t-dies-{uuid.uuid4().hex[:6]}"
    p = proc.spawn(name, ["sh", "-c", "echo 'bind: address already in use' >&2; exit 3"])
    try:
        with pytest.raises(proc.ComponentError) as err:
            proc.wait_until(name, p, lambda: False, timeout=10)
        assert "exited during start-up" in str(err.value)
        assert "bind: address already in use" in str(err.value)
    finally:
        proc.stop([p])
        proc.log_path(name).unlink(missing_ok=True)


def test_stop_ends_the_whole_process_group_and_spares_reused_pids() -> None:
    name = f"t-group-{uuid.uuid4().hex[:6]}"
    p = proc.spawn(name, ["sh", "-c", "sleep 300 & echo $! > child.pid; wait"],
                   cwd=Path(proc.log_path(name)).parent)
    pidfile = proc.log_path(name).parent / "child.pid"
    _eventually(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 10, "child")
    child = int(pidfile.read_text())
    pidfile.unlink()
    impostor = proc.Proc("impostor", p.pid, "1")  # same PID, different start time
    assert not impostor.alive()
    proc.stop([impostor])
    assert p.alive()
    proc.stop([p])
    proc.log_path(name).unlink(missing_ok=True)
    assert not p.alive()
    _eventually(lambda: not Path(f"/proc/{child}").exists()
                or "Z" in Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0],
                10, "the child to end")


def test_gcp_listing_pages_and_filters_by_label(
    sandbox: launcher.Sandbox, name_prefix: str
) -> None:
    import grpc
    from google.cloud import secretmanager
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(sandbox.env["GCP_SECRET_MANAGER_GRPC"])
    sm = secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel))
    project = f"projects/{name_prefix}p"
    for i in range(5):
        sm.create_secret(request={
            "parent": project, "secret_id": f"s{i}",
            "secret": {"replication": {"automatic": {}}, "labels": {"odd": str(i % 2)}}})
    pager = sm.list_secrets(request={"parent": project, "page_size": 2})
    pages = [[s.name.rsplit("/", 1)[1] for s in page.secrets] for page in pager.pages]
    assert pages == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    odd = sm.list_secrets(request={"parent": project, "filter": "labels.odd=1"})
    assert sorted(s.name.rsplit("/", 1)[1] for s in odd) == ["s1", "s3"]
    channel.close()


def test_azure_listing_pages_and_disabled_secret_is_forbidden(
    sandbox: launcher.Sandbox, name_prefix: str
) -> None:
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import HttpResponseError
    from azure.keyvault.secrets import SecretClient

    class DummyCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("sandbox-token", int(time.time()) + 3600)

    kv = SecretClient(sandbox.env["AZURE_KEYVAULT_URL"], DummyCredential(),  # type: ignore[arg-type]
                      api_version="7.6", verify_challenge_resource=False,
                      connection_verify=str(sandbox.ca_file))
    names = [f"{name_prefix}n{i}" for i in range(5)]
    for n in names:
        kv.set_secret(n, "v")
    pages = kv.list_properties_of_secrets(max_page_size=2).by_page()
    seen = [[p.name for p in page] for page in pages]
    assert max(len(p) for p in seen) == 2  # served in pages, followed via nextLink
    assert set(names) <= {n for page in seen for n in page}
    latest = kv.get_secret(names[0]).properties.version
    kv.update_secret_properties(names[0], latest, enabled=False)
    with pytest.raises(HttpResponseError) as denied:
        kv.get_secret(names[0])
    assert denied.value.status_code == 403


def test_env_file_puts_the_cached_kubectl_on_path(sandbox: launcher.Sandbox) -> None:
    """`source .dev/env` gives the shell the sandbox's kubectl, talking to the sandbox."""
    import subprocess

    from sandbox import builder, paths

    kubectl = builder.ensure_kubectl()
    launcher.write_env(sandbox.cfg)
    script = f"source {paths.ENV_FILE} && command -v kubectl && kubectl get ns default -o name"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(kubectl), "namespace/default"]
