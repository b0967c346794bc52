"""``dataFrom[].rewrite[].merge``: several JSON secrets merged into one key set (pure).

ESO added this rewrite after v0.16.2 (its ``runtime/esutils`` ``RewriteMerge``); the fields and
their defaults are ESO's. Every value of the entry is read as a JSON object; their members are
merged in a fixed order -- keys not in ``priority`` alphabetically, then the ``priority`` keys
in the order listed, so a later one wins. A member seen twice is a conflict: an error unless
``conflictPolicy: Ignore``. A ``priority`` key the entry does not have is an error unless
``priorityPolicy: IgnoreNotFound``. ``strategy: Extract`` (the default) makes the merged
members the entry's keys; ``strategy: JSON`` keeps the entry's keys and adds (or replaces) the
key ``into`` holding the merged object as JSON.

Values are rendered as Go's encoder would: strings as they are, numbers without a needless
``.0``, ``true``/``false``, ``null`` as an empty value, objects and arrays as compact JSON with
sorted keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from secretsync.errors import InvalidInput

CONFLICT_POLICIES = ("Error", "Ignore")
PRIORITY_POLICIES = ("Strict", "IgnoreNotFound")
STRATEGIES = ("Extract", "JSON")


@dataclass(frozen=True)
class MergeRewrite:
    """``rewrite[].merge`` with ESO's defaults."""

    into: str = ""
    priority: tuple[str, ...] = ()
    priority_policy: str = "Strict"
    conflict_policy: str = "Error"
    strategy: str = "Extract"


def _number(text: str) -> int | float:
    # Go decodes every JSON number to float64 and prints integral ones without a fraction.
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


def _go_json(value: Any, *, escape_html: bool) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if escape_html:  # json.Marshal does; ESO's JSONMarshal turns it off
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text


def _value_bytes(value: Any) -> bytes:
    """Go's ``GetByteValue`` of a decoded JSON value."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f").encode()
    return _go_json(value, escape_html=True).encode()


def _order(op: MergeRewrite, data: dict[str, bytes]) -> list[str]:
    rest = sorted(k for k in data if k not in op.priority)
    return rest + list(op.priority)


def merge(op: MergeRewrite, data: dict[str, bytes], *, what: str) -> dict[str, bytes]:
    """The entry's keys after one ``merge`` rewrite. ``InvalidInput`` (naming ``what`` and the
    keys, never values) for a value that is not a JSON object, a missing priority key under
    ``Strict``, or conflicts under ``Error``."""
    merged: dict[str, Any] = {}
    conflicts: list[str] = []
    for key in _order(op, data):
        if key not in data:
            if op.priority_policy == "IgnoreNotFound":
                continue
            raise InvalidInput(f"{what}: priority key {key!r} is not among the keys to merge")
        try:
            doc = json.loads(data[key], parse_float=_number)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"{what}: value of {key!r} is not JSON, cannot merge") from None
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise InvalidInput(f"{what}: value of {key!r} is not a JSON object, cannot merge")
        for member, value in doc.items():
            if member in merged:
                conflicts.append(member)
            merged[member] = value
    if conflicts and op.conflict_policy != "Ignore":
        raise InvalidInput(f"{what}: merge conflicts on {', '.join(map(repr, conflicts))}")
    if op.strategy == "JSON":
        if not op.into:
            raise InvalidInput(f"{what}: merge with strategy JSON needs 'into'")
        return {**data, op.into: _go_json(merged, escape_html=False).encode()}
    return {member: _value_bytes(value) for member, value in merged.items()}
