"""AWS backend against the sandbox's moto server: the conformance suite for Secrets Manager and
for SSM Parameter Store, plus the AWS-specific behaviour (version stages, binary secrets,
SecureString, hierarchical paths) and every auth path that can run locally (access keys from a
Secret, the default chain from the environment, IRSA / web identity, role assumption).

moto accepts any credentials (it is not started with ``INITIAL_NO_AUTH_ACTION_COUNT``), so
"the server rejects our keys" cannot happen here; the mapping of AWS's auth error codes is
covered in ``tests/unit/test_cloud_aws.py``.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client import REGISTRY

from secretsync.backends import aws
from secretsync.backends.base import Backend, FindQuery, RemoteRef, StoreContext
from secretsync.errors import BackendAuthError, BackendUnavailable, SecretNotFound, StoreInvalid
from tests.backends.conformance import (
    SENTINEL,
    BackendConformance,
    assert_no_leak,
    dict_resolver,
)

pytestmark = pytest.mark.integration

NS = "team-a"
CREDS_SECRET = "aws-creds"


def key_refs() -> dict[str, Any]:
    return {
        "secretRef": {
            "accessKeyIDSecretRef": {"name": CREDS_SECRET, "key": "access-key"},
            "secretAccessKeySecretRef": {"name": CREDS_SECRET, "key": "secret-key"},
        }
    }


def ctx_for(env: Mapping[str, str], provider: Mapping[str, Any], **kw: Any) -> StoreContext:
    secrets = {
        (NS, CREDS_SECRET, "access-key"): env["AWS_ACCESS_KEY_ID"].encode() + b"\n",
        (NS, CREDS_SECRET, "secret-key"): env["AWS_SECRET_ACCESS_KEY"].encode(),
        (NS, CREDS_SECRET, "session-token"): b"FwoGZXIvYXdzEXAMPLETOKEN",
    }
    return StoreContext(
        store_kind=kw.get("kind", "SecretStore"),
        store_name="aws-store",
        namespace=NS,
        provider=provider,
        resolve_secret=dict_resolver(secrets),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def aws_env(sandbox: Any) -> dict[str, str]:
    return dict(sandbox.env)


def boto(env: Mapping[str, str], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def provider(env: Mapping[str, str], service: str, **extra: Any) -> dict[str, Any]:
    return {
        "service": service,
        "region": env["AWS_DEFAULT_REGION"],
        "endpoint": env["AWS_ENDPOINT_URL"],
        "auth": key_refs(),
        **extra,
    }


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS settings from the host: credentials come only from what the test sets."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


# --- conformance ---------------------------------------------------------------------------


class TestSecretsManagerConformance(BackendConformance):
    supports_versions = True
    supports_find_by_name = True
    supports_find_by_path = True
    supports_find_by_tags = True
    # moto accepts any credentials; see the module docstring.
    server_checks_credentials = False

    @pytest.fixture
    def backend_factory(self, aws_env: dict[str, str]) -> Callable[[], Awaitable[Backend]]:
        return lambda: aws.create(ctx_for(aws_env, provider(aws_env, "SecretsManager")))

    @pytest.fixture
    async def unreachable_backend(self, aws_env: dict[str, str]) -> Backend:
        prov = provider(aws_env, "SecretsManager", endpoint=f"http://127.0.0.1:{free_port()}")
        return await aws.create(ctx_for(aws_env, prov))

    @pytest.fixture
    def sm(self, aws_env: dict[str, str]) -> Iterator[Any]:
        client = boto(aws_env, "secretsmanager")
        created: list[str] = []
        client.created = created
        yield client
        for name in created:
            try:
                client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            except client.exceptions.ResourceNotFoundException:
                pass

    @pytest.fixture
    def write(self, sm: Any) -> Callable[[str, str], str]:
        def write(name: str, value: str) -> str:
            sm.created.append(name)
            return str(sm.create_secret(Name=name, SecretString=value)["VersionId"])

        return write

    @pytest.fixture
    def write_tagged(self, sm: Any) -> Callable[[str, str, dict[str, str]], str]:
        def write(name: str, value: str, tags: dict[str, str]) -> str:
            sm.created.append(name)
            tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
            return str(sm.create_secret(Name=name, SecretString=value, Tags=tag_list)["VersionId"])

        return write

    @pytest.fixture
    def rotate(self, sm: Any) -> Callable[[str, str], str]:
        return lambda name, value: str(
            sm.put_secret_value(SecretId=name, SecretString=value)["VersionId"]
        )

    @pytest.fixture
    def delete(self, sm: Any) -> Callable[[str], None]:
        def delete(name: str) -> None:
            sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)

        return delete


class TestParameterStoreConformance(BackendConformance):
    supports_versions = True
    supports_find_by_name = True
    supports_find_by_path = True
    supports_find_by_tags = True
    server_checks_credentials = False
    # Parameter names containing "/" must be absolute ("/a/b"); the suite's names are
    # relative, so its path test runs on the name-prefix form. Hierarchies are tested below.
    path_separator = "-"

    @pytest.fixture
    def backend_factory(self, aws_env: dict[str, str]) -> Callable[[], Awaitable[Backend]]:
        return lambda: aws.create(ctx_for(aws_env, provider(aws_env, "ParameterStore")))

    @pytest.fixture
    async def unreachable_backend(self, aws_env: dict[str, str]) -> Backend:
        prov = provider(aws_env, "ParameterStore", endpoint=f"http://127.0.0.1:{free_port()}")
        return await aws.create(ctx_for(aws_env, prov))

    @pytest.fixture
    def ssm(self, aws_env: dict[str, str]) -> Iterator[Any]:
        client = boto(aws_env, "ssm")
        created: list[str] = []
        client.created = created
        yield client
        for i in range(0, len(created), 10):
            client.delete_parameters(Names=created[i : i + 10])

    @pytest.fixture
    def write(self, ssm: Any) -> Callable[[str, str], str]:
        def write(name: str, value: str) -> str:
            ssm.created.append(name)
            return str(ssm.put_parameter(Name=name, Value=value, Type="SecureString")["Version"])

        return write

    @pytest.fixture
    def write_tagged(self, ssm: Any) -> Callable[[str, str, dict[str, str]], str]:
        def write(name: str, value: str, tags: dict[str, str]) -> str:
            ssm.created.append(name)
            tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
            resp = ssm.put_parameter(Name=name, Value=value, Type="String", Tags=tag_list)
            return str(resp["Version"])

        return write

    @pytest.fixture
    def rotate(self, ssm: Any) -> Callable[[str, str], str]:
        return lambda name, value: str(
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)[
                "Version"
            ]
        )

    @pytest.fixture
    def delete(self, ssm: Any) -> Callable[[str], None]:
        return lambda name: ssm.delete_parameter(Name=name)


# --- Secrets Manager specifics -------------------------------------------------------------


@pytest.fixture
def sm_client(aws_env: dict[str, str]) -> Iterator[Any]:
    client = boto(aws_env, "secretsmanager")
    created: list[str] = []
    client.created = created
    yield client
    for name in created:
        client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


@pytest.fixture
async def sm_backend(aws_env: dict[str, str]) -> Any:
    b = await aws.create(ctx_for(aws_env, provider(aws_env, "SecretsManager")))
    yield b
    await b.close()


async def test_version_stages_and_ids(sm_client: Any, sm_backend: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-stages"
    sm_client.created.append(name)
    v1 = sm_client.create_secret(Name=name, SecretString='{"pw":"one"}')["VersionId"]
    sm_client.put_secret_value(SecretId=name, SecretString='{"pw":"two"}')
    assert await sm_backend.get(RemoteRef(name, property="pw")) == b"two"
    assert await sm_backend.get(RemoteRef(name, property="pw", version="AWSCURRENT")) == b"two"
    assert await sm_backend.get(RemoteRef(name, property="pw", version="AWSPREVIOUS")) == b"one"
    # a VersionId either bare (UUID-shaped) or with the explicit "uuid/" prefix
    assert await sm_backend.get(RemoteRef(name, property="pw", version=v1)) == b"one"
    assert await sm_backend.get(RemoteRef(name, property="pw", version=f"uuid/{v1}")) == b"one"
    # a custom staging label
    sm_client.put_secret_value(
        SecretId=name,
        SecretString='{"pw":"three"}',
        ClientRequestToken="a-non-uuid-request-token-0123456789",
        VersionStages=["CANARY"],
    )
    assert await sm_backend.get(RemoteRef(name, property="pw", version="CANARY")) == b"three"
    assert (
        await sm_backend.get(
            RemoteRef(name, property="pw", version="uuid/a-non-uuid-request-token-0123456789")
        )
        == b"three"
    )
    assert await sm_backend.get(RemoteRef(name, property="pw")) == b"two"
    with pytest.raises(SecretNotFound, match="version 'NOPE'"):
        await sm_backend.get(RemoteRef(name, version="NOPE"))


async def test_binary_secret(sm_client: Any, sm_backend: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-bin"
    raw = b"\x00\xffbinary\x80" + SENTINEL.encode()
    sm_client.created.append(name)
    sm_client.create_secret(Name=name, SecretBinary=raw, Tags=[{"Key": "k", "Value": name}])
    assert await sm_backend.get(RemoteRef(name)) == raw
    assert await sm_backend.find(FindQuery(tags={"k": name})) == {name: raw}
    with pytest.raises(SecretNotFound) as info:
        await sm_backend.get(RemoteRef(name, property="x"))
    assert_no_leak(info.value)


async def test_find_tags_need_key_and_value_together(
    sm_client: Any, sm_backend: Any, name_prefix: str
) -> None:
    # tag-key / tag-value filters are independent server-side; pairs are checked here
    a, b = f"{name_prefix}-ta", f"{name_prefix}-tb"
    sm_client.created += [a, b]
    sm_client.create_secret(
        Name=a,
        SecretString="{}",
        Tags=[{"Key": "env", "Value": "prod"}, {"Key": "x", "Value": "1"}],
    )
    sm_client.create_secret(
        Name=b,
        SecretString="{}",
        Tags=[{"Key": "env", "Value": "dev"}, {"Key": "y", "Value": "prod"}],
    )
    found = await sm_backend.find(FindQuery(path=name_prefix, tags={"env": "prod"}))
    assert set(found) == {a}


async def test_find_reads_values_in_batches(
    sm_client: Any, sm_backend: Any, name_prefix: str
) -> None:
    names = [f"{name_prefix}/many/{i:02d}" for i in range(45)]
    for i, n in enumerate(names):
        sm_client.created.append(n)
        sm_client.create_secret(Name=n, SecretString=json.dumps({"i": i}))
    before = REGISTRY.get_sample_value(
        "secretsync_backend_calls_total", {"backend": "aws", "operation": "find", "outcome": "ok"}
    )
    found = await sm_backend.find(FindQuery(path=f"{name_prefix}/many/"))
    assert {k: json.loads(v)["i"] for k, v in found.items()} == {n: i for i, n in enumerate(names)}
    after = REGISTRY.get_sample_value(
        "secretsync_backend_calls_total", {"backend": "aws", "operation": "find", "outcome": "ok"}
    )
    assert (after or 0) - (before or 0) == 1


async def test_metrics_count_outcomes(sm_client: Any, sm_backend: Any, name_prefix: str) -> None:
    def sample(outcome: str) -> float:
        labels = {"backend": "aws", "operation": "get", "outcome": outcome}
        return REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) or 0.0

    name = f"{name_prefix}-m"
    sm_client.created.append(name)
    sm_client.create_secret(Name=name, SecretString="{}")
    ok, missing = sample("ok"), sample("not_found")
    await sm_backend.get(RemoteRef(name))
    with pytest.raises(SecretNotFound):
        await sm_backend.get(RemoteRef(name + "-absent"))
    assert sample("ok") == ok + 1
    assert sample("not_found") == missing + 1


# --- Parameter Store specifics -------------------------------------------------------------


@pytest.fixture
def ssm_client(aws_env: dict[str, str]) -> Iterator[Any]:
    client = boto(aws_env, "ssm")
    created: list[str] = []
    client.created = created
    yield client
    for i in range(0, len(created), 10):
        client.delete_parameters(Names=created[i : i + 10])


@pytest.fixture
async def ssm_backend(aws_env: dict[str, str]) -> Any:
    b = await aws.create(ctx_for(aws_env, provider(aws_env, "ParameterStore")))
    yield b
    await b.close()


async def test_ssm_types_and_hierarchy(ssm_client: Any, ssm_backend: Any, name_prefix: str) -> None:
    root = f"/{name_prefix}"
    params = {
        f"{root}/app/url": ("String", "https://db"),
        f"{root}/app/db/password": ("SecureString", SENTINEL),
        f"{root}/app/hosts": ("StringList", "a,b"),
        f"{root}/other/x": ("String", "outside"),
        f"{root}/application": ("String", "not under /app"),
    }
    for name, (typ, value) in params.items():
        ssm_client.created.append(name)
        ssm_client.put_parameter(Name=name, Value=value, Type=typ)
    ssm_client.add_tags_to_resource(
        ResourceType="Parameter",
        ResourceId=f"{root}/app/db/password",
        Tags=[{"Key": "tier", "Value": "db"}],
    )
    # SecureString comes back decrypted
    assert await ssm_backend.get(RemoteRef(f"{root}/app/db/password")) == SENTINEL.encode()
    found = await ssm_backend.find(FindQuery(path=f"{root}/app"))
    assert found == {
        f"{root}/app/url": b"https://db",
        f"{root}/app/db/password": SENTINEL.encode(),
        f"{root}/app/hosts": b"a,b",
    }
    assert set(await ssm_backend.find(FindQuery(path=root, name_regexp="/db/"))) == {
        f"{root}/app/db/password"
    }
    tagged = await ssm_backend.find(FindQuery(path=root, tags={"tier": "db"}))
    assert tagged == {f"{root}/app/db/password": SENTINEL.encode()}


async def test_ssm_version_label(ssm_client: Any, ssm_backend: Any, name_prefix: str) -> None:
    name = f"/{name_prefix}/labelled"
    ssm_client.created.append(name)
    ssm_client.put_parameter(Name=name, Value="v1", Type="String")
    ssm_client.put_parameter(Name=name, Value="v2", Type="String", Overwrite=True)
    ssm_client.label_parameter_version(Name=name, ParameterVersion=1, Labels=["stable"])
    assert await ssm_backend.get(RemoteRef(name)) == b"v2"
    assert await ssm_backend.get(RemoteRef(name, version="stable")) == b"v1"
    assert await ssm_backend.get(RemoteRef(name, version="1")) == b"v1"


# --- auth paths ----------------------------------------------------------------------------


async def test_access_keys_with_session_token(aws_env: dict[str, str]) -> None:
    auth = key_refs()
    auth["secretRef"]["sessionTokenSecretRef"] = {"name": CREDS_SECRET, "key": "session-token"}
    b = await aws.create(ctx_for(aws_env, provider(aws_env, "SecretsManager", auth=auth)))
    try:
        await b.validate()
        assert isinstance(b, aws.AwsBackend) and b.caller_arn
    finally:
        await b.close()


async def test_default_chain_from_environment(
    aws_env: dict[str, str], clean_aws_env: pytest.MonkeyPatch, sm_client: Any, name_prefix: str
) -> None:
    # no auth block and no endpoint in the store: keys and endpoint come from the environment
    clean_aws_env.setenv("AWS_ACCESS_KEY_ID", aws_env["AWS_ACCESS_KEY_ID"])
    clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", aws_env["AWS_SECRET_ACCESS_KEY"])
    clean_aws_env.setenv("AWS_ENDPOINT_URL", aws_env["AWS_ENDPOINT_URL"])
    name = f"{name_prefix}-chain"
    sm_client.created.append(name)
    sm_client.create_secret(Name=name, SecretString='{"k":"v"}')
    b = await aws.create(ctx_for(aws_env, {"region": aws_env["AWS_DEFAULT_REGION"]}))
    try:
        await b.validate()
        assert await b.get(RemoteRef(name, property="k")) == b"v"
    finally:
        await b.close()


async def test_web_identity_irsa(
    aws_env: dict[str, str], clean_aws_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What EKS injects into the pod: a projected token file and the role to assume with it.
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    clean_aws_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    clean_aws_env.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa-reader")
    clean_aws_env.setenv("AWS_ROLE_SESSION_NAME", "pod")
    clean_aws_env.setenv("AWS_ENDPOINT_URL", aws_env["AWS_ENDPOINT_URL"])
    b = await aws.create(ctx_for(aws_env, {"region": aws_env["AWS_DEFAULT_REGION"]}))
    try:
        await b.validate()
        assert isinstance(b, aws.AwsBackend)
        assert b.caller_arn and ":assumed-role/irsa-reader/" in b.caller_arn
    finally:
        await b.close()


async def test_assume_role(aws_env: dict[str, str], sm_client: Any, name_prefix: str) -> None:
    name = f"{name_prefix}-role"
    sm_client.created.append(name)
    sm_client.create_secret(Name=name, SecretString='{"k":"v"}')
    prov = provider(
        aws_env,
        "SecretsManager",
        role="arn:aws:iam::123456789012:role/secret-reader",
        externalID="ext-1",
    )
    b = await aws.create(ctx_for(aws_env, prov))
    try:
        await b.validate()
        assert isinstance(b, aws.AwsBackend)
        assert b.caller_arn == (
            "arn:aws:sts::123456789012:assumed-role/secret-reader/secretsync-aws-store"
        )
        assert await b.get(RemoteRef(name, property="k")) == b"v"
    finally:
        await b.close()


async def test_jwt_service_account_token(
    aws_env: dict[str, str], clean_aws_env: pytest.MonkeyPatch, sm_client: Any, name_prefix: str
) -> None:
    """auth.jwt: a TokenRequest token of the named ServiceAccount is exchanged with STS
    AssumeRoleWithWebIdentity, with no other credentials anywhere (per-store IRSA)."""
    name = f"{name_prefix}-jwt"
    sm_client.created.append(name)
    sm_client.create_secret(Name=name, SecretString='{"k":"v"}')
    requested: list[tuple[str, str, list[str]]] = []

    async def request_token(namespace: str, sa: str, audiences: list[str]) -> str:
        requested.append((namespace, sa, audiences))
        return "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln"

    prov = {
        "region": aws_env["AWS_DEFAULT_REGION"],
        "endpoint": aws_env["AWS_ENDPOINT_URL"],
        "role": "arn:aws:iam::123456789012:role/tenant-a",
        "auth": {"jwt": {"serviceAccountRef": {"name": "app-reader"}}},
    }
    base = ctx_for(aws_env, prov)
    ctx = StoreContext(
        base.store_kind, base.store_name, base.namespace, prov, base.resolve_secret, request_token
    )
    b = await aws.create(ctx)
    try:
        await b.validate()
        assert isinstance(b, aws.AwsBackend)
        assert b.caller_arn == (
            "arn:aws:sts::123456789012:assumed-role/tenant-a/secretsync-aws-store"
        )
        assert await b.get(RemoteRef(name, property="k")) == b"v"
    finally:
        await b.close()
    assert requested == [(NS, "app-reader", ["sts.amazonaws.com"])], "one token, reused"


async def test_no_credentials_anywhere(
    aws_env: dict[str, str], clean_aws_env: pytest.MonkeyPatch
) -> None:
    prov = {"region": aws_env["AWS_DEFAULT_REGION"], "endpoint": aws_env["AWS_ENDPOINT_URL"]}
    b = await aws.create(ctx_for(aws_env, prov))
    try:
        with pytest.raises(BackendAuthError, match="no usable AWS credentials"):
            await b.validate()
    finally:
        await b.close()
    with pytest.raises(BackendAuthError, match="no usable AWS credentials"):
        await aws.create(ctx_for(aws_env, {**prov, "role": "arn:aws:iam::1:role/r"}))


async def test_missing_credentials_secret_key(aws_env: dict[str, str]) -> None:
    auth = key_refs()
    auth["secretRef"]["secretAccessKeySecretRef"]["key"] = "absent"
    with pytest.raises(BackendAuthError, match="absent"):
        await aws.create(ctx_for(aws_env, provider(aws_env, "SecretsManager", auth=auth)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"region": None}, "spec.provider.aws.region is required"),
        ({"service": "KMS"}, "service must be SecretsManager or ParameterStore"),
        (
            {"auth": {"jwt": {"serviceAccountRef": {"name": "sa"}}}},
            "role is required with auth.jwt",
        ),
        (
            {
                "role": "arn:aws:iam::123456789012:role/r",
                "auth": {"jwt": {"serviceAccountRef": {"name": "sa", "namespace": "kube-system"}}},
            },
            "may only use ServiceAccounts in its own namespace",
        ),
        (
            {"auth": {"secretRef": {"accessKeyIDSecretRef": {"name": "x", "key": "y"}}}},
            "secretAccessKeySecretRef is required",
        ),
        (
            {
                "auth": {
                    "secretRef": {
                        "accessKeyIDSecretRef": {"name": CREDS_SECRET, "key": "access-key"},
                        "secretAccessKeySecretRef": {
                            "name": CREDS_SECRET,
                            "key": "secret-key",
                            "namespace": "elsewhere",
                        },
                    }
                }
            },
            "may only reference Secrets in its own namespace",
        ),
    ],
)
async def test_invalid_store(aws_env: dict[str, str], change: dict[str, Any], message: str) -> None:
    prov = {k: v for k, v in {**provider(aws_env, "SecretsManager"), **change}.items() if v}
    with pytest.raises(StoreInvalid, match=message) as info:
        await aws.create(ctx_for(aws_env, prov))
    assert "SecretStore team-a/aws-store" in str(info.value)


async def test_cluster_store_may_reference_other_namespace(aws_env: dict[str, str]) -> None:
    auth = key_refs()
    auth["secretRef"]["secretAccessKeySecretRef"]["namespace"] = "elsewhere"
    ctx = ctx_for(
        aws_env, provider(aws_env, "SecretsManager", auth=auth), kind="ClusterSecretStore"
    )
    seen: list[tuple[str, str, str]] = []
    inner = ctx.resolve_secret

    async def spy(namespace: str, name: str, key: str) -> bytes:
        seen.append((namespace, name, key))
        return await inner(NS, name, key)

    b = await aws.create(
        StoreContext(ctx.store_kind, ctx.store_name, ctx.namespace, ctx.provider, spy)
    )
    await b.close()
    assert ("elsewhere", CREDS_SECRET, "secret-key") in seen
    assert (NS, CREDS_SECRET, "access-key") in seen


async def test_unreachable_is_unavailable_and_counted(aws_env: dict[str, str]) -> None:
    prov = provider(aws_env, "ParameterStore", endpoint=f"http://127.0.0.1:{free_port()}")
    b = await aws.create(ctx_for(aws_env, prov))
    labels = {"backend": "aws", "operation": "get", "outcome": "unavailable"}
    before = REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) or 0.0
    try:
        with pytest.raises(BackendUnavailable, match="cannot reach AWS"):
            await b.get(RemoteRef(f"/{uuid.uuid4().hex}"))
    finally:
        await b.close()
    assert REGISTRY.get_sample_value("secretsync_backend_calls_total", labels) == before + 1


async def test_entry_point_builds_the_backend(aws_env: dict[str, str]) -> None:
    from secretsync.backends import registry

    factory = registry.factory_for("aws")
    b = await factory(ctx_for(aws_env, provider(aws_env, "SecretsManager")))
    try:
        assert isinstance(b, aws.AwsBackend)
        await b.validate()
    finally:
        await b.close()
