"""Kubernetes manifests as text <-> plain dicts: multi-document YAML, JSON, ``kind: List``.

Shared by the CLI (seal/unseal/reencrypt input and output) and the key loader (kubectl-exported
key Secrets). libyaml's C loader and dumper are used when present: parsing and printing a
1,000-document file must not dominate sealing it.

JSON input may be one object, a JSON array, or a stream of objects (what ``kubectl get -o json``
and ``secretsync seal -o json`` print). Several JSON documents are written as such a stream, one
pretty-printed object after the other.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

from secretsync.errors import InvalidInput

Format = Literal["yaml", "json"]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def sniff_format(text: str) -> Format:
    """JSON when the first non-blank character opens an object or array, else YAML."""
    stripped = text.lstrip()
    return "json" if stripped[:1] in ("{", "[") else "yaml"


def _load_json_stream(text: str, source: str) -> list[Any]:
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            return out
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        if isinstance(obj, list):
            out.extend(obj)
        else:
            out.append(obj)


def _load_yaml(text: str, source: str) -> list[Any]:
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        # Never echo the offending text: it may be a secret value.
        raise InvalidInput(f"{source}: invalid YAML{where}: {problem}") from None


def load_documents(
    data: bytes | str, source: str, *, expand_lists: bool = True
) -> tuple[list[dict[str, Any]], Format]:
    """All documents of a YAML or JSON text, with ``kind: List`` expanded.

    Returns the documents and the detected format. Empty YAML documents are dropped; any
    document that is not a mapping is an ``InvalidInput`` naming its position.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput(f"{source}: not UTF-8 text") from None
    else:
        text = data
    fmt = sniff_format(text)
    raw = _load_json_stream(text, source) if fmt == "json" else _load_yaml(text, source)
    docs: list[dict[str, Any]] = []
    for index, doc in enumerate(raw, start=1):
        if not isinstance(doc, dict):
            raise InvalidInput(f"{source}: document {index} is not a mapping (an object)")
        if expand_lists and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            for item in doc["items"]:
                if not isinstance(item, dict):
                    raise InvalidInput(f"{source}: document {index}: List item is not a mapping")
                docs.append(item)
        else:
            docs.append(doc)
    return docs, fmt


def dump_documents(docs: list[dict[str, Any]], fmt: Format) -> str:
    """YAML documents separated by ``---``, or a stream of indented JSON objects."""
    if fmt == "json":
        return "".join(json.dumps(d, indent=2, ensure_ascii=False) + "\n" for d in docs)
    return yaml.dump_all(
        docs,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        explicit_start=len(docs) > 1,
        width=1 << 30,  # never fold the long base64 items
    )


def describe(doc: dict[str, Any], index: int | None = None) -> str:
    """``document 2 (Secret ns/name)`` -- how errors name a document."""
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else "object"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name") if isinstance(meta.get("name"), str) else "<no name>"
    ns = meta.get("namespace")
    ident = f"{kind} {ns}/{name}" if isinstance(ns, str) and ns else f"{kind} {name}"
    return f"document {index} ({ident})" if index is not None else ident
