"""ESO's ``dataFrom`` rewrite guide and gjson ``property`` paths end to end: the manifests
(ESO's examples, ``apiVersion`` changed) pass strict server-side validation, the controller
reads OpenBao and writes the Secret ESO's guide describes. Rewrites run before key conversion,
with Go's regexp semantics."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from secretsync import api
from tests.integration._external import MARK, World
from tests.integration.test_external_sync import admin, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def strict_dry_run(k8s: Any, namespace: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND_EXTERNAL,
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"secretStoreRef": {"name": "vault"}, **spec}}
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL_EXTERNAL, body,
        dry_run="All", field_validation="Strict")


def rw(source: str, target: str) -> dict[str, Any]:
    return {"regexp": {"source": source, "target": target}}


def test_guide_examples_and_gjson_paths(world: World, k8s: Any) -> None:  # noqa: F811
    w = world
    w.put("path/to/my/secrets/username", {"v": f"user-{MARK}"})
    w.put("path/to/my/secrets/password", {"v": "pw"})
    w.put("my-secrets-dev", {"password": f"bar-{MARK}"})
    w.put("my-secrets-prod", {"password": "safebar"})
    w.put("development", {"foo/bar": "1111", "foo$baz": "2222"})
    w.put("creds/object-storage-credentials", {"ACCESS_KEY": "XXXX", "SECRET_KEY": "YYYY"})
    w.put("creds/mongo-credentials", {"USERNAME": "UUUU", "PASSWORD": f"PP-{MARK}"})
    w.put("people", {"friends": [{"first": "Dale"}, {"first": f"Roger-{MARK}"}],
                     "fav.movie": "Deer Hunter"})
    spec = {
        "target": {"name": "out"},
        "data": [
            {"secretKey": "second", "remoteRef": {"key": "people", "property": "friends.1.first"}},
            {"secretKey": "count", "remoteRef": {"key": "people", "property": "friends.#"}},
            {"secretKey": "movie", "remoteRef": {"key": "people", "property": "fav\\.movie"}},
        ],
        "dataFrom": [
            {"find": {"path": "path/to/my", "name": {"regexp": "secrets"}},
             "rewrite": [rw("path/to/my/secrets/(.*)", "$1")]},
            {"extract": {"key": "my-secrets-dev"}, "rewrite": [rw("(.*)", "dev-$1")]},
            {"extract": {"key": "my-secrets-prod"}, "rewrite": [rw("(.*)", "prod-$1")]},
            {"extract": {"key": "development"}, "rewrite": [rw("[^a-zA-Z0-9 -]", "_")]},
            {"find": {"path": "creds", "name": {"regexp": ".*-credentials"}},
             "rewrite": [{"merge": {}}]},
        ],
    }
    strict_dry_run(k8s, w.namespace, spec)
    w.apply_es("guide", spec)
    w.wait_ready("guide")
    d = w.data("out")
    assert d == {
        "username": f'{{"v":"user-{MARK}"}}'.encode(), "password": b'{"v":"pw"}',
        "dev-password": f"bar-{MARK}".encode(), "prod-password": b"safebar",
        "foo_bar": b"1111", "foo_baz": b"2222",
        "ACCESS_KEY": b"XXXX", "SECRET_KEY": b"YYYY", "USERNAME": b"UUUU",
        "PASSWORD": f"PP-{MARK}".encode(),
        "second": f"Roger-{MARK}".encode(), "count": b"2", "movie": b"Deer Hunter",
    }
    w.assert_no_leak()


def test_bad_rewrites(world: World, k8s: Any) -> None:  # noqa: F811
    w = world
    w.put("m", {"a": "1"})
    # not RE2 (Go has no lookahead): the object is accepted by the schema, the spec is not
    w.apply_es("lookahead", {"dataFrom": [{"extract": {"key": "m"},
                                            "rewrite": [rw("(?=a)", "b")]}]})
    c = w.wait_ready("lookahead", status="False", reason="InvalidSpec")["status"]
    assert "rewrite[0].regexp.source" in c["conditions"][0]["message"]
    # unknown fields and two operations in one rewrite are refused by the API server
    for bad in ({"transform": {"template": "{{ .value }}"}},
                {"regexp": {"source": "a", "target": "b"}, "merge": {}},
                {"merge": {"strategy": "YAML"}}):
        with pytest.raises(ApiException) as info:
            strict_dry_run(k8s, w.namespace, {"dataFrom": [{"extract": {"key": "m"},
                                                            "rewrite": [bad]}]})
        assert info.value.status in (400, 422)


def test_go_template_engine_v2(world: World, k8s: Any) -> None:  # noqa: F811
    """ESO's templating-guide shape (engineVersion v2, Go template + sprig) syncs as is."""
    w = world
    w.put("db", {"user": "admin", "password": f"pw-{MARK}"})
    spec = {
        "target": {"name": "go-out", "template": {
            "engineVersion": "v2",
            "data": {"config.yaml": "user: {{ .user }}\npassword: {{ .password | quote }}\n",
                     "b64": "{{ .password | b64enc }}"}}},
        "data": [{"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
                 {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
    }
    strict_dry_run(k8s, w.namespace, spec)
    w.apply_es("go", spec)
    w.wait_ready("go")
    assert w.data("go-out") == {
        "config.yaml": f'user: admin\npassword: "pw-{MARK}"\n'.encode(),
        "b64": base64.b64encode(f"pw-{MARK}".encode()),
    }
    w.assert_no_leak()

