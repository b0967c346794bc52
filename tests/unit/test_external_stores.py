"""Which ClusterSecretStores need a client per reading namespace (credential references
without an explicit namespace resolve in the ExternalSecret's namespace)."""

from __future__ import annotations

from typing import Any

import pytest

from secretsync.controller.external.stores import Stores, refs_need_namespace
from secretsync.errors import BackendAuthError, KubeError, StoreInvalid


@pytest.mark.parametrize(
    ("provider", "want"),
    [
        ({"vault": {"auth": {"tokenSecretRef": {"name": "t", "key": "k"}}}}, True),
        ({"vault": {"auth": {"tokenSecretRef": {"name": "t", "key": "k", "namespace": "n"}}}},
         False),
        ({"vault": {"auth": {"kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa"}}}}},
         True),
        ({"vault": {"auth": {"kubernetes": {"role": "r", "serviceAccountRef": {
            "name": "sa", "namespace": "n"}}}}}, False),
        ({"vault": {"auth": {"kubernetes": {"role": "r", "secretRef": {"name": "t"}}}}}, True),
        ({"vault": {"auth": {"kubernetes": {"role": "r", "secretRef": {
            "name": "t", "namespace": "n"}}}}}, False),
        ({"vault": {"auth": {"jwt": {"kubernetesServiceAccountToken": {
            "serviceAccountRef": {"name": "sa"}}}}}}, True),
        ({"aws": {"region": "eu-west-1"}}, False),
        ({"aws": {"auth": {"secretRef": {
            "accessKeyIDSecretRef": {"name": "a", "key": "id", "namespace": "n"},
            "secretAccessKeySecretRef": {"name": "a", "key": "secret"}}}}}, True),
    ],
)
def test_refs_need_namespace(provider: dict[str, Any], want: bool) -> None:
    assert refs_need_namespace(provider) is want


class _FakeKube:
    """Only what ``Stores`` asks of Kubernetes for workload identity."""

    def __init__(self) -> None:
        self.tokens: list[tuple[str, str, Any, int]] = []

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        if name == "forbidden":
            raise KubeError("forbidden", status=403, reason="Forbidden")
        if name != "app":
            return None
        return {"metadata": {"annotations": {"iam.gke.io/gcp-service-account": "a@p.iam"}}}

    def request_token(self, namespace: str, sa: str, *, audiences: Any,
                      expiration_seconds: int) -> str:
        self.tokens.append((namespace, sa, audiences, expiration_seconds))
        return "jwt"


async def test_service_account_annotations_and_token_lifetime() -> None:
    kube = _FakeKube()
    stores = Stores(kube)  # type: ignore[arg-type]
    assert await stores._read_service_account("ns", "app") == {
        "iam.gke.io/gcp-service-account": "a@p.iam"
    }
    with pytest.raises(StoreInvalid, match="ServiceAccount ns/gone does not exist"):
        await stores._read_service_account("ns", "gone")
    with pytest.raises(BackendAuthError, match="cannot read ServiceAccount ns/forbidden"):
        await stores._read_service_account("ns", "forbidden")
    assert await stores._request_token("ns", "app", ["vault"], 1200) == "jwt"
    assert await stores._request_token("ns", "app", []) == "jwt"
    assert kube.tokens == [("ns", "app", ["vault"], 1200), ("ns", "app", None, 600)]
