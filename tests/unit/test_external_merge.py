"""``dataFrom[].rewrite[].merge`` (added to ESO after v0.16.2; fields and defaults as in ESO's
``ExternalSecretRewriteMerge``): JSON secrets merged into one key set."""

from __future__ import annotations

import json
from typing import Any

import pytest

from secretsync.errors import InvalidInput
from secretsync.reconcile import external_data as xd
from secretsync.reconcile.external_merge import MergeRewrite, merge
from secretsync.reconcile.external_spec import parse_spec

MONGO = b'{"username": "foz", "password": "baz"}'
REDIS = b'{"host": "redis.example.com", "port": "6379"}'


def spec_of(*data_from: dict[str, Any]) -> Any:
    return parse_spec({"metadata": {"name": "m"}, "spec": {
        "secretStoreRef": {"name": "v"}, "dataFrom": list(data_from)}})


def test_guide_empty_merge_hoists_every_member_after_find() -> None:
    # find '.*-credentials' under path/to/secrets, then `merge: {}`
    spec = spec_of({"find": {"path": "path/to/secrets", "name": {"regexp": ".*-credentials"}},
                    "rewrite": [{"merge": {}}]})
    found = {
        "path/to/secrets/object-storage-credentials": b'{"ACCESS_KEY":"XXXX","SECRET_KEY":"YYYY"}',
        "path/to/secrets/mongo-credentials": b'{"USERNAME":"XXXX","PASSWORD":"YYYY"}',
    }
    fetch = xd.Fetch("find", path="path/to/secrets", name_regexp=".*-credentials")
    assert xd.assemble(spec, {fetch: found}).data == {
        "ACCESS_KEY": b"XXXX", "SECRET_KEY": b"YYYY", "USERNAME": b"XXXX", "PASSWORD": b"YYYY"}


def test_defaults() -> None:
    (item,) = spec_of({"extract": {"key": "k"}, "rewrite": [{"merge": {}}]}).data_from
    assert item.rewrites == (MergeRewrite(),)
    assert MergeRewrite() == MergeRewrite("", (), "Strict", "Error", "Extract")


def test_priority_keys_go_last_in_their_order_and_win_conflicts() -> None:
    op = MergeRewrite(priority=("mongo", "redis"), conflict_policy="Ignore")
    data = {"redis": REDIS, "mongo": MONGO, "other": b'{"key":"value","host":"other"}'}
    assert merge(op, data, what="w") == {"key": b"value", "host": b"redis.example.com",
                                         "username": b"foz", "password": b"baz", "port": b"6379"}


def test_without_priority_keys_merge_alphabetically() -> None:
    op = MergeRewrite(conflict_policy="Ignore")
    assert merge(op, {"b": b'{"x":"from-b"}', "a": b'{"x":"from-a"}'}, what="w") == {
        "x": b"from-b"}


def test_missing_priority_key_is_an_error_unless_ignored() -> None:
    data = {"mongo": MONGO, "redis": REDIS}
    with pytest.raises(InvalidInput, match="'nope'"):
        merge(MergeRewrite(priority=("nope", "mongo")), data, what="w")
    op = MergeRewrite(priority=("nope", "mongo"), priority_policy="IgnoreNotFound")
    assert set(merge(op, data, what="w")) == {"username", "password", "host", "port"}


def test_conflicts_are_errors_by_default_naming_keys_not_values() -> None:
    with pytest.raises(InvalidInput) as info:
        merge(MergeRewrite(), {"a": b'{"user":"s3cr3t"}', "b": b'{"user":"other"}'},
              what="spec.dataFrom[0].rewrite[0].merge")
    assert "'user'" in str(info.value) and "s3cr3t" not in str(info.value)
    assert "spec.dataFrom[0].rewrite[0].merge" in str(info.value)


def test_json_strategy_adds_the_merged_object_under_into() -> None:
    op = MergeRewrite(strategy="JSON", into="credentials")
    out = merge(op, {"mongo": MONGO, "redis": REDIS}, what="w")
    assert out["mongo"] == MONGO and out["redis"] == REDIS
    # Go's encoder (HTML escaping off): compact, keys sorted
    assert out["credentials"] == (b'{"host":"redis.example.com","password":"baz",'
                                  b'"port":"6379","username":"foz"}')
    assert json.loads(out["credentials"])["username"] == "foz"


def test_json_strategy_needs_into_at_parse_time() -> None:
    with pytest.raises(InvalidInput, match=r"spec.dataFrom\[0\].rewrite\[0\].merge.into"):
        spec_of({"extract": {"key": "k"}, "rewrite": [{"merge": {"strategy": "JSON"}}]})


@pytest.mark.parametrize("value", [b'{"a": 1', b'["a"]', b"text"])
def test_values_that_are_not_json_objects_are_errors(value: bytes) -> None:
    with pytest.raises(InvalidInput, match="cannot merge"):
        merge(MergeRewrite(), {"k": value}, what="w")


def test_values_render_as_go_does() -> None:
    doc = b'{"i":6379,"f":1.5,"g":2.0,"t":true,"n":null,"o":{"b":1,"a":"<&>"},"l":[1,"x"]}'
    assert merge(MergeRewrite(), {"k": doc}, what="w") == {
        "i": b"6379", "f": b"1.5", "g": b"2", "t": b"true", "n": b"",
        "o": b'{"a":"\\u003c\\u0026\\u003e","b":1}', "l": b'[1,"x"]'}


def test_merge_then_regexp_in_order() -> None:
    spec = spec_of({"extract": {"key": "k"}, "rewrite": [
        {"merge": {}}, {"regexp": {"source": "^(.*)$", "target": "db-$1"}}]})
    out = xd.assemble(spec, {xd.Fetch("get_map", "k"): {"mongo": MONGO}})
    assert out.data == {"db-username": b"foz", "db-password": b"baz"}


@pytest.mark.parametrize(("rewrite", "field"), [
    ({}, "spec.dataFrom[0].rewrite[0] needs exactly one"),
    ({"regexp": {"source": "a", "target": "b"}, "merge": {}}, "needs exactly one"),
    ({"transform": {"template": "{{ .value }}"}}, "rewrite[0].transform"),
    ({"merge": {"conflictPolicy": "Keep"}}, "rewrite[0].merge.conflictPolicy"),
    ({"merge": {"strategy": "YAML"}}, "rewrite[0].merge.strategy"),
    ({"merge": {"priorityPolicy": "Loose"}}, "rewrite[0].merge.priorityPolicy"),
    ({"merge": {"priority": "a"}}, "rewrite[0].merge.priority"),
])
def test_invalid_rewrites_name_the_field(rewrite: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        spec_of({"extract": {"key": "k"}, "rewrite": [rewrite]})
    assert field in str(info.value)
