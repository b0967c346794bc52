"""Kubernetes manifests as text <-> plain dicts: multi-document YAML, JSON, ``kind: List``.

Shared by the CLI (seal/unseal/reencrypt input and output), the key loader (kubectl-exported
key Secrets) and the controller's HTTP endpoints. libyaml's C loader and dumper are used when
present: parsing and printing a 1,000-document file must not dominate sealing it.

JSON input may be one object, a JSON array, or a stream of objects (what ``kubectl get -o json``
and ``secretsync seal -o json`` print). Several JSON documents are written as such a stream, one
pretty-printed object after the other. Text opening with ``{`` or ``[`` that is not JSON is read
as (flow-style) YAML, as kubectl does.

Hostile input is refused with one ``InvalidInput`` line that never quotes the text:

- **Aliases** (``*name``) may not blow a document up. A 431-byte "billion laughs" expands to
  ~10^9 nodes; PyYAML shares the aliased objects, so loading is cheap, but anything that walks
  the result (an error message, ``json.dumps``, a copy) expands it and takes gigabytes.
  Refusing aliases outright would reject manifests ``kubectl apply`` accepts (its go-yaml
  allows anchors and only limits the expansion ratio), so we do the same: the nodes that
  aliases add, over the whole input, may not exceed ``ALIAS_ALLOWANCE`` or the number of
  nodes actually written, whichever is larger -- expanding can at most double what an
  attacker could have sent literally. An alias inside its own anchor (a cycle) is refused.
  The check walks the composed node graph, and only when the text can hold an anchor
  (a cheap scan for ``&`` or ``*`` where a token can start), so ordinary input keeps the C
  loader's speed.
- **Duplicate mapping keys** are refused (PyYAML and ``json`` silently keep the last one, so
  a typo would drop a value without a word; the API server refuses them too). The check is a
  length comparison per mapping, plus a closer look only when the lengths differ.
- **Nesting** deeper than ``MAX_DEPTH`` levels (no Kubernetes object comes close; printing
  or copying a deeper one overflows Python's recursion limit).
- Input over ``MAX_INPUT_BYTES`` (the CLI reads at most that much; see ``read_limited``).

YAML timestamps stay strings (as in Kubernetes, which reads YAML as JSON), so every document
can be printed as JSON again.
"""

from __future__ import annotations

import json
import re
from typing import IO, Any, Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from secretsync.api.names import is_dns_label, is_dns_subdomain, shown
from secretsync.errors import InvalidInput

Format = Literal["yaml", "json"]

MAX_INPUT_BYTES = 64 << 20  # 64 MiB: far above any manifest, far below a memory problem
MAX_DEPTH = 100  # nesting levels; Kubernetes objects (CRD schemas included) stay well below
ALIAS_ALLOWANCE = 10_000  # nodes aliases may add to any input, however small

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# parser messages quote the offending text (a tag, an alias name): drop any longer quote
_QUOTED = re.compile(r"\s*'[^']{4,}'|\s*\"[^\"]{4,}\"")
_SHOWN_KINDS = frozenset(
    (
        "Secret", "SealedSecret", "List", "ConfigMap", "ExternalSecret", "ClusterExternalSecret",
        "SecretStore", "ClusterSecretStore", "PushSecret",
    )
)  # fmt: skip


class _Refused(InvalidInput):
    """Text that parses but is refused (aliases, duplicates, depth), as opposed to text that
    does not parse: JSON that does not parse is tried as flow-style YAML, and YAML that does
    not parse either reports the JSON error."""


class _Loader(_BaseLoader):  # type: ignore[misc]
    """The safe loader (libyaml when present) refusing duplicate keys, with timestamps as
    strings."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._own_pairs: dict[Node, list[tuple[Node, Node]]] = {}

    def flatten_mapping(self, node: MappingNode) -> None:
        before = node.value
        super().flatten_mapping(node)
        if node.value is not before:  # merge keys (``<<``): ``before`` holds the own pairs
            self._own_pairs[node] = before

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):  # a duplicate, or keys merged in and overridden
            seen: set[Any] = set()
            own: list[tuple[Node, Node]] | None = self._own_pairs.get(node)
            for key_node, _ in node.value if own is None else own:
                key = self.construct_object(key_node)
                if key in seen:
                    mark = key_node.start_mark
                    raise _Refused(
                        f"line {mark.line + 1} column {mark.column + 1}: duplicate key "
                        f"{_quoted(key)}(a mapping may hold each key once)"
                    )
                seen.add(key)
        return mapping


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)


def _quoted(key: object) -> str:
    name = shown(key)
    return f"'{name}' " if name is not None else ""


def sniff_format(text: str) -> Format:
    """JSON when the first non-blank character opens an object or array, else YAML."""
    stripped = text.lstrip()
    return "json" if stripped[:1] in ("{", "[") else "yaml"


def read_limited(stream: IO[bytes], source: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """At most ``limit`` bytes of ``stream`` (``/dev/zero`` as input must not exhaust
    memory); more is an ``InvalidInput`` naming ``source``."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"{source}: larger than {limit >> 20} MiB, the input limit")
    return data


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateJsonKey(key)
            seen.add(key)
    return out


class _DuplicateJsonKey(Exception):
    pass


def _load_json_stream(text: str, source: str) -> list[Any]:
    decoder = json.JSONDecoder(object_pairs_hook=_unique_pairs)
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
        except RecursionError:
            raise _Refused(f"{source}: JSON nested deeper than {MAX_DEPTH} levels") from None
        except _DuplicateJsonKey as exc:
            raise _Refused(
                f"{source}: JSON document {len(out) + 1}: duplicate key {_quoted(exc.args[0])}"
                "(an object may hold each key once)"
            ) from None
        if isinstance(obj, list):
            out.extend(obj)
        else:
            out.append(obj)


def _may_have_anchors(text: str) -> bool:
    """Whether ``text`` can hold an anchor or alias token: ``&`` or ``*`` at the start of the
    text or after whitespace, a flow indicator or ``:``, followed by a name character. A
    false positive only costs the slower (still linear) check. ``str.find`` runs at memchr
    speed; a regular expression over a 4 MB file takes tens of milliseconds."""
    for char in "&*":
        pos = text.find(char)
        while pos != -1:
            before = text[pos - 1] if pos else " "
            after = text[pos + 1 : pos + 2]
            if before in _TOKEN_START and after and after not in _NOT_NAME:
                return True
            pos = text.find(char, pos + 1)
    return False


_TOKEN_START = frozenset(" \t\r\n[{,:")
_NOT_NAME = frozenset(" \t\r\n[]{},")


def _alias_growth(root: Node) -> tuple[int, int]:
    """(nodes as written, nodes once every alias is expanded) of a composed document; raises
    on an alias inside its own anchor. An alias is one node as written. Iterative, with the
    expanded size memoised per collection node: linear in the text however large the
    expansion (scalars cannot nest, so they are counted, not memoised)."""
    if not isinstance(root, SequenceNode | MappingNode):
        return 1, 1
    size: dict[int, int] = {}
    ancestors: set[int] = set()
    written = 1
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            ancestors.discard(id(node))
            total = 1 + len(children)
            for child in children:
                if not isinstance(child, ScalarNode):
                    total += size[id(child)] - 1
            size[id(node)] = total
            continue
        if id(node) in size:
            continue
        ancestors.add(id(node))
        written += len(children)
        stack.append((node, True))
        for child in children:
            if isinstance(child, ScalarNode) or id(child) in size:
                continue
            if id(child) in ancestors:
                mark = child.start_mark
                raise _Refused(
                    f"line {mark.line + 1} column {mark.column + 1}: this anchor contains an "
                    "alias to itself (a cycle)"
                )
            stack.append((child, False))
    return written, size[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value  # type: ignore[no-any-return]


def _too_deep(doc: Any) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        for child in obj.values() if isinstance(obj, dict) else obj:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _load_yaml(text: str, source: str) -> list[Any]:
    check_aliases = _may_have_anchors(text)
    written = added = 0
    out: list[Any] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if check_aliases:
                as_written, expanded = _alias_growth(node)
                written += as_written
                added += expanded - as_written
                if added > max(ALIAS_ALLOWANCE, written):
                    raise _Refused(
                        f"document {len(out) + 1}: aliases expand it beyond "
                        f"{max(ALIAS_ALLOWANCE, written)} extra nodes (a YAML alias bomb?)"
                    )
            doc = loader.construct_document(node)
            if doc is not None:
                out.append(doc)
        return out
    except _Refused as exc:
        raise _Refused(f"{source}: invalid YAML: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        # Never echo the offending text: it may be a secret value.
        problem = " ".join(_QUOTED.sub("", problem).split()) or "cannot parse"
        raise InvalidInput(f"{source}: invalid YAML{where}: {problem}") from None
    except RecursionError:  # the pure-Python loader, without libyaml's own nesting limit
        raise _Refused(f"{source}: YAML nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


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
    if len(text) > MAX_INPUT_BYTES:
        raise InvalidInput(f"{source}: larger than {MAX_INPUT_BYTES >> 20} MiB, the input limit")
    fmt = sniff_format(text)
    if fmt == "json":
        try:
            raw = _load_json_stream(text, source)
        except _Refused:
            raise
        except InvalidInput as json_error:
            try:  # flow-style YAML (``{apiVersion: v1, kind: Secret, ...}``) opens like JSON
                raw, fmt = _load_yaml(text, source), "yaml"
            except _Refused:
                raise
            except InvalidInput:
                raise json_error from None
    else:
        raw = _load_yaml(text, source)
    docs: list[dict[str, Any]] = []
    for index, doc in enumerate(raw, start=1):
        if not isinstance(doc, dict):
            raise InvalidInput(f"{source}: document {index} is not a mapping (an object)")
        if _too_deep(doc):
            raise InvalidInput(f"{source}: document {index} nests deeper than {MAX_DEPTH} levels")
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
    """``document 2 (Secret ns/name)`` -- how errors name a document. A message never
    carries a value typed into the wrong field, so the kind is shown only when it is one
    found next to Secrets (else "object"), the name and namespace only when they are valid
    Kubernetes names (else "<invalid name>", without the namespace)."""
    kind = doc.get("kind")
    kind = kind if isinstance(kind, str) and kind in _SHOWN_KINDS else "object"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        name = "<no name>"
    elif not is_dns_subdomain(name):
        name = "<invalid name>"
    ns = meta.get("namespace")
    shown_ns = isinstance(ns, str) and is_dns_label(ns)
    ident = f"{kind} {ns}/{name}" if shown_ns else f"{kind} {name}"
    return f"document {index} ({ident})" if index is not None else ident
