"""ExternalSecret spec parsing: durations, defaults, and one clear error per bad field."""

from __future__ import annotations

from typing import Any

import pytest

from secretsync.errors import InvalidInput
from secretsync.reconcile.external_spec import parse_duration, parse_spec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400.0),
        ("15s", 15.0),
        ("0", 0.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1m30.5s", 90.5),
        (30, 30.0),
        ("1h0m0s", 3600.0),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "10", "-5s", "1h 30m", "1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(text, what="spec.refreshInterval")
    assert "spec.refreshInterval" in str(info.value)


def es(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "app", "namespace": "ns"}, "spec": spec}


BASE = {
    "secretStoreRef": {"name": "vault"},
    "data": [{"secretKey": "pw", "remoteRef": {"key": "db", "property": "password"}}],
}


def test_defaults() -> None:
    s = parse_spec(es(BASE))
    assert (s.store_kind, s.target_name, s.creation_policy, s.deletion_policy) == (
        "SecretStore",
        "app",
        "Owner",
        "Retain",
    )
    assert (s.refresh_interval, s.refresh_policy) == (3600.0, "Periodic")
    assert s.data[0].ref.property == "password" and s.data[0].decoding == "None"


def test_full_spec() -> None:
    s = parse_spec(
        es(
            {
                "secretStoreRef": {"name": "v", "kind": "ClusterSecretStore"},
                "refreshInterval": "15s",
                "refreshPolicy": "OnChange",
                "target": {
                    "name": "t",
                    "creationPolicy": "Merge",
                    "deletionPolicy": "Delete",
                    "immutable": True,
                    "template": {
                        "type": "kubernetes.io/tls",
                        "mergePolicy": "Merge",
                        "metadata": {"labels": {"a": "b"}},
                        "data": {"x": "{{ pw }}"},
                    },
                },
                "data": [
                    {
                        "secretKey": "pw",
                        "remoteRef": {"key": "db", "version": "3", "decodingStrategy": "Base64"},
                    }
                ],
                "dataFrom": [
                    {"extract": {"key": "cfg"}},
                    {
                        "find": {"path": "app", "name": {"regexp": "^a"}},
                        "rewrite": [{"regexp": {"source": "/", "target": "-"}}],
                    },
                ],
                "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}],
            }
        )
    )
    assert s.store_kind == "ClusterSecretStore" and s.refresh_interval == 15
    assert s.template is not None and s.template.type == "kubernetes.io/tls"
    assert s.template.merge_policy == "Merge" and s.template.labels == (("a", "b"),)
    assert s.data[0].decoding == "Base64" and s.data[0].ref.version == "3"
    assert s.data_from[1].find is not None and s.data_from[1].find.name_regexp == "^a"
    assert s.data_from[1].rewrites[0].target == "-"
    assert s.restart_targets[0].kind == "Deployment" and s.immutable


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"secretStoreRef": None}, "spec.secretStoreRef"),
        ({"secretStoreRef": {"name": "v", "kind": "Nope"}}, "spec.secretStoreRef.kind"),
        ({"refreshInterval": "soon"}, "spec.refreshInterval"),
        ({"refreshPolicy": "Always"}, "spec.refreshPolicy"),
        ({"target": {"creationPolicy": "Adopt"}}, "spec.target.creationPolicy"),
        ({"data": [{"secretKey": "a"}]}, "spec.data[0].remoteRef"),
        (
            {"data": [{"secretKey": "a", "remoteRef": {"key": "k", "decodingStrategy": "Hex"}}]},
            "decodingStrategy",
        ),
        ({"data": [], "dataFrom": []}, "needs data"),
        ({"dataFrom": [{"extract": {"key": "a"}, "find": {"path": "b"}}]}, "exactly one"),
        ({"dataFrom": [{"find": {"name": {"regexp": "("}}}]}, "regular expression"),
        ({"dataFrom": [{"find": {}}]}, "spec.dataFrom[0]"),
        (
            {
                "data": [
                    {"secretKey": "a", "remoteRef": {"key": "k"}},
                    {"secretKey": "a", "remoteRef": {"key": "j"}},
                ]
            },
            "more than once",
        ),
        ({"rolloutRestartTargets": [{"kind": "Pod", "name": "x"}]}, "rolloutRestartTargets"),
    ],
)
def test_bad_fields_are_named(patch: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_spec(es({**BASE, **patch}))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
