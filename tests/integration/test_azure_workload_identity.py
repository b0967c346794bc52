"""Azure workload identity of a store's own ServiceAccount (``authType: WorkloadIdentity`` +
``serviceAccountRef``), the whole flow against the sandbox: a TokenRequest for the
ServiceAccount from the sandbox API server (audience ``api://AzureADTokenExchange``), that
token as the client assertion to the loopback Entra ID (``entra.py``), which checks it
against a federated identity credential (issuer = the API server's service-account issuer,
subject = ``system:serviceaccount:<ns>:<sa>``, signature by the API server's ``sa.pub``), and
the resulting bearer token used on the sandbox Key Vault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from secretsync.backends import azure
from secretsync.backends.base import RemoteRef, StoreContext
from secretsync.errors import BackendAuthError, StoreInvalid
from secretsync.kube import Kube
from tests.backends.conformance import assert_no_leak, dict_resolver
from tests.integration import entra
from tests.integration._sa_tokens import Requests, read_annotations
from tests.integration.test_azure_backend import (  # noqa: F401  (fixtures)
    TENANT,
    base,
    ca_bundle,
    put,
    seed,
    vault,
)

pytestmark = pytest.mark.integration

APP = "12121212-3434-5656-7878-909090909090"
OTHER_TENANT = "99999999-0000-0000-0000-000000000000"


@pytest.fixture
def identity(sandbox: Any, namespace: str) -> Iterator[Any]:
    """Entra ID knowing one app, federated with ServiceAccount ``app`` of ``namespace``."""
    issuer = f"https://127.0.0.1:{sandbox.cfg['ports']['apiserver']}"
    fic = entra.FederatedCredential(
        issuer=issuer,
        subject=f"system:serviceaccount:{namespace}:app",
        public_key_pem=Path(sandbox.cfg["kube"]["sa_pub"]).read_bytes(),
    )
    e = entra.start(entra.Entra(federations={APP: [fic]}, tenants={TENANT}))
    yield e
    e.stop()


@pytest.fixture
def accounts(k8s: Any, namespace: str) -> None:
    """``app`` (federated, annotated), ``stranger`` (annotated, not federated), ``bare``."""
    core = client.CoreV1Api(k8s)
    notes = {"azure.workload.identity/client-id": APP,
             "azure.workload.identity/tenant-id": TENANT}
    for name, meta in (("app", notes), ("stranger", notes), ("bare", None)):
        core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name=name, annotations=meta)))


@pytest.fixture
def kube(sandbox: Any) -> Kube:
    return Kube.from_config(str(sandbox.kubeconfig))


def ctx_for(namespace: str, provider: dict[str, Any], kube: Kube,
            requests: Requests) -> StoreContext:
    async def annotations(ns: str, sa: str) -> Any:
        return await read_annotations(kube, ns, sa)

    return StoreContext("SecretStore", "az-wi", namespace, provider, dict_resolver({}),
                        requests, annotations)


def provider(base: dict[str, Any], sa: str, **over: Any) -> dict[str, Any]:  # noqa: F811
    prov = {k: v for k, v in base.items() if k != "tenantId"}
    return {**prov, "authType": "WorkloadIdentity", "serviceAccountRef": {"name": sa}, **over}


async def test_service_account_federated_with_entra(
    base: dict[str, Any], seed: Any, identity: Any, accounts: None, kube: Kube,  # noqa: F811
    namespace: str, name_prefix: str,
) -> None:
    name = f"{name_prefix}wi-sa"
    await put(seed, name, "from-federated-sa")
    requests = Requests(kube)
    # client and tenant ids from the ServiceAccount's annotations
    b = await azure.create(ctx_for(namespace, provider(base, "app"), kube, requests))
    try:
        await b.validate()
        assert await b.get(RemoteRef(name)) == b"from-federated-sa"
    finally:
        await b.close()
    assert requests.asked[0] == (namespace, "app", ["api://AzureADTokenExchange"], None)
    assert identity.issued == 1  # one Entra token, reused for both calls

    # a ServiceAccount the app registration is not federated with is refused
    b = await azure.create(ctx_for(namespace, provider(base, "stranger"), kube, requests))
    try:
        with pytest.raises(BackendAuthError) as info:
            await b.validate()
        assert_no_leak(info.value, *requests.tokens)
    finally:
        await b.close()


async def test_store_ids_win_over_annotations(
    base: dict[str, Any], seed: Any, identity: Any, accounts: None, kube: Kube,  # noqa: F811
    namespace: str, name_prefix: str,
) -> None:
    name = f"{name_prefix}wi-ids"
    await put(seed, name, "v")
    # the store's tenant (unknown to this Entra ID) wins over the annotation's: refused
    prov = provider(base, "app", tenantId=OTHER_TENANT)
    b = await azure.create(ctx_for(namespace, prov, kube, Requests(kube)))
    try:
        with pytest.raises(BackendAuthError):
            await b.validate()
    finally:
        await b.close()
    # both ids in the store: the annotations are not needed
    prov = provider(base, "bare", tenantId=TENANT,
                    authSecretRef={"clientId": {"name": "wi", "key": "client-id"}})
    requests = Requests(kube)

    async def no_reads(ns: str, sa: str) -> Any:
        raise AssertionError("the ServiceAccount was read")

    ctx = StoreContext("SecretStore", "az-wi", namespace, prov,
                       dict_resolver({(namespace, "wi", "client-id"): APP.encode()}),
                       requests, no_reads)
    b = await azure.create(ctx)
    try:
        with pytest.raises(BackendAuthError):  # "bare" is not federated: Entra refuses
            await b.validate()
    finally:
        await b.close()
    assert requests.asked == [(namespace, "bare", ["api://AzureADTokenExchange"], None)]


async def test_missing_ids_are_store_invalid(
    base: dict[str, Any], identity: Any, accounts: None, kube: Kube,  # noqa: F811
    namespace: str,
) -> None:
    with pytest.raises(StoreInvalid, match=r"azure\.workload\.identity/client-id"):
        await azure.create(ctx_for(namespace, provider(base, "bare"), kube, Requests(kube)))
    with pytest.raises(StoreInvalid, match=r"ServiceAccount .*/nobody does not exist"):
        await azure.create(ctx_for(namespace, provider(base, "nobody"), kube, Requests(kube)))
    with pytest.raises(StoreInvalid, match=r"serviceAccountRef\.namespace 'elsewhere' is not"):
        await azure.create(ctx_for(
            namespace, provider(base, "app") | {
                "serviceAccountRef": {"name": "app", "namespace": "elsewhere"}},
            kube, Requests(kube)))
