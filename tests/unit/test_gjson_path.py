"""``remoteRef.property`` with gjson's path syntax (the subset ESO documents). Expected values
were checked against github.com/tidwall/gjson v1.18.0 (the version ESO v0.16.2 builds with);
where gjson returns an object or array as its raw source text, we return compact JSON with
sorted keys, as before (for Vault, which ESO re-marshals with Go's json, that is the same)."""

from __future__ import annotations

import json

import pytest

from secretsync.backends import gjson_path
from secretsync.backends.base import select_property
from secretsync.errors import InvalidInput, SecretNotFound
from secretsync.reconcile.external_spec import parse_spec

DOC = {
    "name": {"first": "Tom", "last": "Anderson"},
    "age": 37,
    "children": ["Sara", "Alex", "Jack"],
    "fav.movie": "Deer Hunter",
    "friends": [
        {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
        {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
        {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]},
    ],
    "a*b": 1,
    "q?": True,
    "f": 1.5,
    "obj": {"x": [1, {"y": "z"}]},
    "e": {},
}
RAW = json.dumps(DOC).encode()

FOUND = [
    ("name.last", "Anderson"),
    ("age", "37"),
    ("children", '["Sara","Alex","Jack"]'),
    ("children.#", "3"),
    ("children.1", "Alex"),
    ("children.01", "Alex"),
    ("child*.2", "Jack"),
    ("c?ildren.0", "Sara"),
    ("fav\\.movie", "Deer Hunter"),
    ("fav.movie", "Deer Hunter"),  # a top-level key that is the whole property wins
    ("friends.1.last", "Craig"),
    ("friends.#", "3"),
    ("friends.#.first", '["Dale","Roger","Jane"]'),
    ("friends.#.age", "[44,68,47]"),
    ("friends.#.nope", "[]"),
    ("friends.#.nets.0", '["ig","fb","ig"]'),
    ("friends.#.nets.#", "[3,2,2]"),
    ("friends.#.first|1", "Roger"),
    ("friends|1|first", "Roger"),
    ("a\\*b", "1"),
    ("a*b", "1"),
    ("q\\?", "true"),
    ("f", "1.5"),
    ("obj.x.1.y", "z"),
    ("obj.x.#", "2"),
    ("obj.x.1", '{"y":"z"}'),
    ("name", '{"first":"Tom","last":"Anderson"}'),
    ("name.*", "Tom"),
    ("*.first", "Tom"),
    ("e", "{}"),
]

NOT_FOUND = ["friends.5", "name.nope", "age.x", "name.#", "children.-1", "nope", "fav\\.x"]

UNSUPPORTED = ['friends.#(last=="Murphy").first', "@reverse", "children|@reverse", "..0",
               "[name,age]", "{name}"]


@pytest.mark.parametrize(("path", "want"), FOUND)
def test_paths_select_what_gjson_selects(path: str, want: str) -> None:
    assert select_property(RAW, path, what="secret 's'") == want.encode()


@pytest.mark.parametrize("path", NOT_FOUND)
def test_missing_paths_are_secret_not_found_without_the_value(path: str) -> None:
    with pytest.raises(SecretNotFound) as info:
        select_property(RAW, path, what="secret 's'")
    assert "Anderson" not in str(info.value) and "secret 's'" in str(info.value)


@pytest.mark.parametrize("path", UNSUPPORTED)
def test_unsupported_syntax_is_refused_not_misread(path: str) -> None:
    with pytest.raises(gjson_path.UnsupportedPath):
        gjson_path.check(path)
    with pytest.raises(InvalidInput):
        select_property(RAW, path, what="secret 's'")


def test_unsupported_property_is_an_invalid_spec_naming_the_field() -> None:
    obj = {"metadata": {"name": "a"}, "spec": {"secretStoreRef": {"name": "v"}, "data": [
        {"secretKey": "k", "remoteRef": {"key": "db", "property": "a.@reverse"}}]}}
    with pytest.raises(InvalidInput) as info:
        parse_spec(obj)
    assert "spec.data[0].remoteRef.property" in str(info.value)


def test_array_at_the_top_and_not_json() -> None:
    assert select_property(b'[{"a":1},{"a":2}]', "#.a", what="w") == b"[1,2]"
    assert select_property(b'[{"a":1},{"a":2}]', "1.a", what="w") == b"2"
    with pytest.raises(SecretNotFound):
        select_property(b"plain text", "a", what="w")
