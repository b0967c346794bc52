"""The part of gjson's path syntax that ESO's ``remoteRef.property`` documents (pure).

ESO selects ``property`` with the Go library gjson. This is a small reimplementation of the
subset its docs and provider pages use, on a document already parsed by ``json.loads``:

- ``a.b.c``: object keys, one per component; ``\\`` escapes the next character
  (``a\\.b`` is the key ``a.b``, ``a\\*`` a literal ``*``);
- ``*`` and ``?`` in a key are wildcards (any run / one character), the first matching key in
  document order wins;
- on an array, an all-digit component is an index (``friends.1.first``) and ``#`` its length;
- ``#.rest`` maps ``rest`` over the array's elements, keeping those where it exists
  (``friends.#.first`` -> ``["Dale","Roger"]``); ``|`` separates like ``.`` but, after a
  ``#.``, applies what follows to that result rather than to each element
  (``friends.#.first|0``).

Queries (``#(...)``), modifiers (``@reverse``), multipaths (``[a,b]`` / ``{a,b}``) and JSON
lines (``..``) are refused with ``UnsupportedPath`` rather than silently misread. Missing
values are ``MISSING``, never an exception.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Final


class UnsupportedPath(ValueError):
    """The path uses gjson syntax outside the supported subset."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class _Part:
    key: str  # unescaped text
    wild: bool  # contains an unescaped * or ?
    pattern: str  # the fnmatch pattern (escapes kept as literal classes) when wild
    pipe: bool  # separated from the previous part by '|' rather than '.'


def _parse(path: str) -> list[_Part]:
    if path.startswith(("..", "@", "[", "{")) or path == "":
        raise UnsupportedPath(f"property path {path!r} uses unsupported gjson syntax")
    parts: list[_Part] = []
    key: list[str] = []
    pat: list[str] = []
    raw_start = i = 0
    wild = False
    pipe = False
    while True:
        c = path[i] if i < len(path) else None
        if c is None or c in ".|":
            if path.startswith(("#(", "@"), raw_start):
                raise UnsupportedPath(f"property path {path!r} uses unsupported gjson syntax")
            parts.append(_Part("".join(key), wild, "".join(pat), pipe))
            if c is None:
                return parts
            key, pat, wild, pipe, raw_start = [], [], False, c == "|", i + 1
        elif c == "\\" and i + 1 < len(path):
            i += 1
            key.append(path[i])
            pat.append(f"[{path[i]}]" if path[i] in "*?[]" else path[i])
        else:
            key.append(c)
            if c in "*?":
                wild = True
                pat.append(c)
            else:
                pat.append("[[]" if c == "[" else "[]]" if c == "]" else c)
        i += 1


_INDEX = re.compile(r"^[0-9]+$")


def _step(value: Any, part: _Part) -> Any:
    if isinstance(value, dict):
        if part.wild:
            for k, v in value.items():
                if fnmatch.fnmatchcase(str(k), part.pattern):
                    return v
            return MISSING
        return value.get(part.key, MISSING)
    if isinstance(value, list):
        if part.key == "#":
            return len(value)
        if _INDEX.match(part.key):
            n = int(part.key)
            return value[n] if n < len(value) else MISSING
    return MISSING


def _walk(value: Any, parts: list[_Part]) -> Any:
    for i, part in enumerate(parts):
        if value is MISSING:
            return MISSING
        if part.key == "#" and isinstance(value, list) and i + 1 < len(parts):
            nxt = parts[i + 1]
            if not nxt.pipe:
                # '#.rest': up to the next '|' per element, then the rest on the result.
                end = next((j for j in range(i + 1, len(parts)) if parts[j].pipe), len(parts))
                mapped = [_walk(v, parts[i + 1 : end]) for v in value]
                found = [v for v in mapped if v is not MISSING]
                return _walk(found, parts[end:])
        value = _step(value, part)
    return value


def check(path: str) -> str:
    """``path`` if it is in the supported subset, else ``UnsupportedPath``."""
    _parse(path)
    return path


def get(doc: Any, path: str) -> Any:
    """The value at gjson ``path`` in ``doc`` (a ``json.loads`` result), or ``MISSING``."""
    return _walk(doc, _parse(path))
