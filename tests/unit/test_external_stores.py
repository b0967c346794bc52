"""Which ClusterSecretStores need a client per reading namespace (credential references
without an explicit namespace resolve in the ExternalSecret's namespace)."""

from __future__ import annotations

from typing import Any

import pytest

from secretsync.controller.external.stores import refs_need_namespace


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
        ({"aws": {"region": "eu-west-1"}}, False),
        ({"aws": {"auth": {"secretRef": {
            "accessKeyIDSecretRef": {"name": "a", "key": "id", "namespace": "n"},
            "secretAccessKeySecretRef": {"name": "a", "key": "secret"}}}}}, True),
    ],
)
def test_refs_need_namespace(provider: dict[str, Any], want: bool) -> None:
    assert refs_need_namespace(provider) is want
