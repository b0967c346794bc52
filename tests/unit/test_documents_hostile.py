"""``load_documents`` against hostile input: alias bombs, cycles, duplicate keys, deep nesting,
oversized input -- each refused with one ``InvalidInput`` that never quotes the text -- and the
input it must keep accepting (anchors within budget, merge keys, flow-style YAML)."""

from __future__ import annotations

import io
import json

import pytest

from secretsync import documents
from secretsync.documents import (
    ALIAS_ALLOWANCE,
    MAX_DEPTH,
    describe,
    dump_documents,
    load_documents,
    read_limited,
)
from secretsync.errors import InvalidInput
from tests.hostile import billion_laughs


@pytest.mark.parametrize("field", ["kind", "apiVersion", "metadata"])
def test_alias_bomb_is_refused(field: str) -> None:
    with pytest.raises(InvalidInput, match=r"bomb\.yaml: invalid YAML: document 1: aliases"):
        load_documents(billion_laughs(field), "bomb.yaml")


def test_alias_bomb_split_over_documents_is_refused() -> None:
    """The budget is for the whole input: many small bombs add up."""
    small = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
    small += "b: &b [" + ",".join(["*a"] * 10) + "]\nc: [" + ",".join(["*b"] * 10) + "]\n"
    text = "---\n".join([small] * (ALIAS_ALLOWANCE // 1000 + 2))
    with pytest.raises(InvalidInput, match="aliases expand"):
        load_documents(text, "many.yaml")


def test_alias_cycle_is_refused() -> None:
    with pytest.raises(
        InvalidInput, match="line 1 column 7: this anchor contains an alias to itself"
    ):
        load_documents("spec: &x [*x]\n", "cycle.yaml")


def test_anchors_within_budget_and_merge_keys_are_accepted() -> None:
    text = """\
defaults: &labels {app: db, tier: backend}
metadata:
  labels: *labels
  annotations:
    <<: *labels
    tier: override
items: [*labels, *labels, *labels]
"""
    docs, fmt = load_documents(text, "ok.yaml")
    assert fmt == "yaml"
    assert docs[0]["metadata"]["annotations"] == {"app": "db", "tier": "override"}
    assert docs[0]["items"] == [{"app": "db", "tier": "backend"}] * 3


def test_plain_input_skips_the_alias_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Input that cannot hold an anchor never pays for the node walk (libyaml speed): a
    1,000-document file with '&' and '*' inside values is loaded without it."""

    def boom(*_: object) -> tuple[int, int]:
        raise AssertionError("the alias walk ran on input without anchors")

    monkeypatch.setattr(documents, "_alias_growth", boom)
    doc = {
        "kind": "Secret",
        "metadata": {"name": "n"},
        "stringData": {"a": "p&ss*word", "b": "x & y * z"},
    }
    docs, _ = load_documents(dump_documents([doc] * 1000, "yaml"), "big.yaml")
    assert len(docs) == 1000 and docs[0] == doc


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: 1\nb: 2\na: 3\n", "line 3 column 1: duplicate key 'a'"),
        ("m:\n  x: 1\n  x: 1\n", "line 3 column 3: duplicate key 'x'"),
        ("{a: 1, a: 2}", "duplicate key 'a'"),
        ('{"a": 1, "a": 2}', "JSON document 1: duplicate key 'a'"),
        ('{"a": {"b": 1}}\n{"c": 1, "c": 2}', "JSON document 2: duplicate key 'c'"),
        ("base: &b {x: 1}\nm:\n  <<: *b\n  y: 1\n  y: 2\n", "line 5 column 3: duplicate key 'y'"),
    ],
)
def test_duplicate_keys_are_refused(text: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        load_documents(text, "dup")


def test_duplicate_key_message_hides_a_key_that_is_not_name_shaped() -> None:
    with pytest.raises(InvalidInput) as err:
        load_documents("'hunter 2!': 1\n'hunter 2!': 2\n", "dup")
    assert "hunter" not in err.value.message and "duplicate key" in err.value.message


@pytest.mark.parametrize("fmt", ["json", "yaml-flow", "yaml-block"])
def test_deep_nesting_is_refused(fmt: str) -> None:
    depth = MAX_DEPTH + 1
    if fmt == "json":
        text = '{"kind": "Secret", "x": ' + "[" * depth + "]" * depth + "}"
    elif fmt == "yaml-flow":
        text = "kind: Secret\nx: " + "[" * depth + "]" * depth + "\n"
    else:
        text = (
            "kind: Secret\n"
            + "".join("  " * i + "x:\n" for i in range(depth))
            + "  " * depth
            + "1\n"
        )
    with pytest.raises(InvalidInput, match=f"nests deeper than {MAX_DEPTH} levels"):
        load_documents(text, "deep")


@pytest.mark.parametrize("depth", [10_000, 1_000_000])
def test_pathological_nesting_is_refused_not_a_recursion_error(depth: int) -> None:
    for text in ("[" * depth, "a: " + "[" * depth, '{"a": ' + "[" * depth):
        with pytest.raises(InvalidInput):
            load_documents(text, "deep")


def test_nesting_up_to_the_limit_is_accepted_and_printable() -> None:
    inner: list[object] = []
    for _ in range(MAX_DEPTH - 2):
        inner = [inner]
    doc = {"kind": "Secret", "x": inner}
    for fmt in ("json", "yaml"):
        docs, _ = load_documents(dump_documents([doc], fmt), "ok")  # type: ignore[arg-type]
        assert docs == [doc]


def test_flow_style_yaml_is_yaml_not_broken_json() -> None:
    text = "{apiVersion: v1, kind: Secret, metadata: {name: db}, stringData: {a: b}}\n"
    docs, fmt = load_documents(text, "flow.yaml")
    assert fmt == "yaml" and docs[0]["stringData"] == {"a": "b"}
    docs, fmt = load_documents("{kind: Secret}\n---\n{kind: Secret}\n", "flow.yaml")
    assert fmt == "yaml" and len(docs) == 2
    # text that is neither still reports the JSON error, which is what its author meant
    with pytest.raises(InvalidInput, match="invalid JSON at line 1 column 20"):
        load_documents('{"kind": "Secret", ', "broken.json")
    docs, fmt = load_documents('{"kind": "Secret"}', "x.json")
    assert fmt == "json"


def test_timestamps_stay_strings_so_json_output_works() -> None:
    docs, _ = load_documents("metadata: {creationTimestamp: 2024-01-02T03:04:05Z}\n", "t")
    assert docs[0]["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"
    assert json.loads(dump_documents(docs, "json"))["metadata"]["creationTimestamp"]


@pytest.mark.parametrize(
    "text",
    [
        "a: !HunterTwoSecret x\n",  # a tag is quoted by the parser
        "a: *HunterTwoSecret\n",  # so is an undefined alias (pure-Python parser)
        'a: "HunterTwoSecret\\q"\n',
    ],
)
def test_yaml_errors_never_quote_the_text(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        load_documents(text, "bad.yaml")
    assert "HunterTwo" not in err.value.message, err.value.message
    assert err.value.message.startswith("bad.yaml: invalid YAML at line 1")


def test_read_limited() -> None:
    assert read_limited(io.BytesIO(b"x" * 10), "f", limit=10) == b"x" * 10
    with pytest.raises(InvalidInput, match="f: larger than"):
        read_limited(io.BytesIO(b"x" * 11), "f", limit=10)


def test_describe_shows_only_name_shaped_identity() -> None:
    ok = {"kind": "Secret", "metadata": {"name": "db", "namespace": "app"}}
    assert describe(ok, 2) == "document 2 (Secret app/db)"
    bad = {"kind": {"password": "hunter2"}, "metadata": {"name": "Hunter 2!", "namespace": "P@ss"}}
    assert describe(bad, 1) == "document 1 (object <invalid name>)"
    assert describe({"kind": "Tr0ub4dor", "metadata": {"name": ["x"]}}) == "object <no name>"
