"""``dataFrom`` keys in ESO's order (v0.16.2, pkg/controllers/externalsecret and pkg/utils):
rewrites see the names as the backend returns them; the conversion of invalid characters
happens only when there is no rewrite; empty keys are dropped. Cases follow ESO's rewrite
guide (docs/guides/datafrom-rewrite.md), restated here."""

from __future__ import annotations

from typing import Any

import pytest

from secretsync.errors import InvalidInput
from secretsync.reconcile import external_data as xd
from secretsync.reconcile import external_keys as xk
from secretsync.reconcile.external_spec import parse_spec


def spec_of(*data_from: dict[str, Any]) -> Any:
    return parse_spec({"metadata": {"name": "example"}, "spec": {
        "secretStoreRef": {"name": "backend"}, "dataFrom": list(data_from)}})


def rw(source: str, target: str) -> dict[str, Any]:
    return {"regexp": {"source": source, "target": target}}


def test_guide_remove_common_path_from_find() -> None:
    # find under path/to/my, names matching 'secrets'; the rewrite strips the common path
    spec = spec_of({"find": {"path": "path/to/my", "name": {"regexp": "secrets"}},
                    "rewrite": [rw("path/to/my/secrets/(.*)", "$1")]})
    found = {"path/to/my/secrets/username": b"u", "path/to/my/secrets/password": b"p"}
    fetch = xd.Fetch("find", path="path/to/my", name_regexp="secrets")
    assert xd.assemble(spec, {fetch: found}).data == {"username": b"u", "password": b"p"}


def test_guide_avoid_key_collisions_with_prefixes() -> None:
    # two secrets with the same JSON key; "(.*)" -> "dev-$1" gives one prefix, not two
    spec = spec_of({"extract": {"key": "my-secrets-dev"}, "rewrite": [rw("(.*)", "dev-$1")]},
                   {"extract": {"key": "my-secrets-prod"}, "rewrite": [rw("(.*)", "prod-$1")]})
    out = xd.assemble(spec, {xd.Fetch("get_map", "my-secrets-dev"): {"password": b"bar"},
                             xd.Fetch("get_map", "my-secrets-prod"): {"password": b"safebar"}})
    assert out.data == {"dev-password": b"bar", "prod-password": b"safebar"}


def test_guide_remove_invalid_characters() -> None:
    spec = spec_of({"extract": {"key": "development"}, "rewrite": [rw("[^a-zA-Z0-9 -]", "_")]})
    out = xd.assemble(spec, {xd.Fetch("get_map", "development"): {"foo/bar": b"1111",
                                                                  "foo$baz": b"2222"}})
    assert out.data == {"foo_bar": b"1111", "foo_baz": b"2222"}


def test_rewrites_are_layered_first_to_last() -> None:
    spec = spec_of({"find": {"path": "team"}, "rewrite": [rw("^team/", ""), rw("/", "-"),
                                                          rw("^(.*)$", "x.$1")]})
    out = xd.assemble(spec, {xd.Fetch("find", path="team"): {"team/app/db": b"v"}})
    assert out.data == {"x.app-db": b"v"}


def test_without_rewrite_invalid_characters_are_converted() -> None:
    spec = spec_of({"find": {"path": "team"}}, {"extract": {"key": "m"}})
    out = xd.assemble(spec, {xd.Fetch("find", path="team"): {"team/app/db": b"v"},
                             xd.Fetch("get_map", "m"): {"a b": b"1", "ok-key.x_y": b"2"}})
    assert out.data == {"team_app_db": b"v", "a_b": b"1", "ok-key.x_y": b"2"}


def test_a_rewrite_turns_conversion_off() -> None:
    spec = spec_of({"find": {"path": "team"}, "rewrite": [rw("^team/", "")]})
    with pytest.raises(InvalidInput, match="not a valid Secret key"):
        xd.assemble(spec, {xd.Fetch("find", path="team"): {"team/app/db": b"v"}})


def test_unicode_conversion_strategy() -> None:
    spec = spec_of({"find": {"path": "p", "conversionStrategy": "Unicode"}})
    out = xd.assemble(spec, {xd.Fetch("find", path="p"): {"p/a b": b"v"}})
    assert out.data == {"p_U002f_a_U0020_b": b"v"}
    assert xk.convert_key("a/b", "Default") == "a_b"
    assert xk.convert_key("a~b€", "Unicode") == "a_U007e_b_U20ac_"


def test_conversion_collisions_are_errors() -> None:
    spec = spec_of({"extract": {"key": "m"}})
    with pytest.raises(InvalidInput, match="a_b"):
        xd.assemble(spec, {xd.Fetch("get_map", "m"): {"a/b": b"1", "a b": b"2"}})


def test_keys_rewritten_to_nothing_are_dropped() -> None:
    spec = spec_of({"extract": {"key": "m"}, "rewrite": [rw("^drop-.*", "")]})
    out = xd.assemble(spec, {xd.Fetch("get_map", "m"): {"drop-me": b"1", "keep": b"2"}})
    assert out.data == {"keep": b"2"}


def test_overlong_keys_are_errors() -> None:
    spec = spec_of({"extract": {"key": "m"}})
    with pytest.raises(InvalidInput, match="longer than 253"):
        xd.assemble(spec, {xd.Fetch("get_map", "m"): {"k" * 254: b"1"}})


@pytest.mark.parametrize(("block", "field"), [
    ({"extract": {"key": "m"}, "rewrite": [rw("(?=x)", "y")]},
     "spec.dataFrom[0].rewrite[0].regexp.source"),
    ({"extract": {"key": "m"}, "rewrite": [rw("a", "b"), rw("(a)\\1", "b")]},
     "spec.dataFrom[0].rewrite[1].regexp.source"),
    ({"find": {"path": "p", "conversionStrategy": "Hex"}},
     "spec.dataFrom[0].find.conversionStrategy"),
])
def test_invalid_rewrite_or_strategy_names_the_field(block: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        spec_of(block)
    assert field in str(info.value)


def test_conversion_strategy_is_parsed() -> None:
    spec = spec_of({"extract": {"key": "m", "conversionStrategy": "Unicode"}},
                   {"find": {"path": "p"}})
    assert [d.conversion for d in spec.data_from] == ["Unicode", "Default"]
