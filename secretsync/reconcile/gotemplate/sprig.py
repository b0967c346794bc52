"""The sprig functions ESO's templates use, with sprig's (and Go's) behaviour on bytes.

Written from what the functions do, not from their source: sprig's argument order (the
string last, so they chain: ``.x | trimPrefix "a"``), its forgiving conversions (``atoi`` of
junk is 0, ``b64dec`` of junk is Go's error text, ``fromJson`` of junk is nil), int64
arithmetic that wraps, ``[]string`` from ``splitList``/``keys`` and ``map[string]string`` from
``split``. Anything that can build a large value (``repeat``, ``indent``, ``replace``,
``join``) checks the size before allocating it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from secretsync.reconcile import template_limits as limits
from secretsync.reconcile.gotemplate.encoding import (
    decode_rune,
    from_json_value,
    go_b64decode,
    go_json,
    go_quote,
)
from secretsync.reconcile.gotemplate.execute import Func
from secretsync.reconcile.gotemplate.values import (
    ExecError,
    GoMap,
    Int64,
    StrList,
    StrMap,
    kind,
    sprint_value,
    wrap64,
)


def _text(s: bytes) -> str:
    return s.decode("utf-8", "replace")


def strval(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    return sprint_value(v, False)


def _map_text(s: bytes, fn: Any) -> bytes:
    if s.isascii():
        return bytes(fn(s))
    chars = [fn(c) if len(fn(c)) == 1 else c for c in _text(s)]
    return "".join(chars).encode()


_SPACES = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
          "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _trim(s: bytes) -> bytes:
    if s.isascii():
        return s.strip(b" \t\n\v\f\r")
    start, end = 0, len(s)
    while start < end:
        ch, size = decode_rune(s, start)
        if ch is None or ch not in _SPACES:
            break
        start += size
    while end > start:
        for size in (1, 2, 3, 4):
            ch = None
            try:
                ch = s[end - size:end].decode("utf-8")
                break
            except UnicodeDecodeError:
                continue
        if ch is None or ch not in _SPACES:
            break
        end -= len(ch.encode())
    return s[start:end]


def _replace(old: bytes, new: bytes, src: bytes) -> bytes:
    hits = src.count(old) if old else len(_text(src)) + 1
    limits.current().need(len(src) + hits * max(len(new) - len(old), 0), "a replaced value")
    if not old:
        runes = _runes(src)
        return new + b"".join(r + new for r in runes)
    return src.replace(old, new)


def _runes(s: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(s):
        _, size = decode_rune(s, i)
        out.append(s[i:i + size])
        i += size
    return out


def _repeat(count: int, s: bytes) -> bytes:
    if count < 0:
        raise ExecError("error calling repeat: strings: negative Repeat count")
    limits.current().need(count * len(s), "a repeated value")
    return s * count


def _indent(spaces: int, s: bytes) -> bytes:
    pad = max(spaces, 0)
    if spaces < 0:
        raise ExecError("error calling indent: strings: negative Repeat count")
    limits.current().need(len(s) + (s.count(b"\n") + 1) * pad, "an indented value")
    return b" " * pad + s.replace(b"\n", b"\n" + b" " * pad)


def _to_json(v: Any) -> bytes:
    limits.current().need(2 * limits.cost(v) + 16, "a JSON value")
    return go_json(v)


def _from_json(s: bytes) -> Any:
    try:
        return from_json_value(json.loads(s))
    except ValueError:
        return None


def _must_from_json(s: bytes) -> Any:
    try:
        return from_json_value(json.loads(s))
    except ValueError as exc:
        raise ExecError(f"error calling mustFromJson: {str(exc).splitlines()[0]}") from None


def empty(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, bool):
        return not v
    if isinstance(v, int | float | bytes | list | dict):
        return not v
    return False


def to_int64(v: Any) -> int:
    """spf13/cast's ToInt64 with the error dropped: junk is 0."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return -(1 << 63)
        return wrap64(int(v))
    if isinstance(v, bytes):
        text = v.decode("latin-1")
        if text.strip() != text:
            return 0
        if "." in text and text.rstrip("0").endswith("."):
            text = text.rstrip("0")[:-1]
        try:
            clean = text
            digits = clean.lstrip("+-")
            if len(digits) > 1 and digits[0] == "0" and digits[1:].isdigit():
                clean = clean.replace("0", "0o", 1)
            n = int(clean, 0)
        except ValueError:
            return 0
        return n if -(1 << 63) <= n < 1 << 63 else 0
    return 0


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, bytes):
        try:
            return float(v.decode("latin-1")) if v.strip() == v else 0.0
        except ValueError:
            return 0.0
    return 0.0


def _atoi(s: bytes) -> int:
    try:
        text = s.decode("ascii")
        if text.strip() != text or "_" in text:
            return 0
        n = int(text, 10)
        return n if -(1 << 63) <= n < 1 << 63 else 0
    except (ValueError, UnicodeDecodeError):
        return 0


def _div(a: Any, c: Any) -> int:
    x, y = to_int64(a), to_int64(c)
    if y == 0:
        raise ZeroDivisionError("runtime error: integer divide by zero")
    q = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
    return Int64(wrap64(q))


def _mod(a: Any, c: Any) -> int:
    x, y = to_int64(a), to_int64(c)
    if y == 0:
        raise ZeroDivisionError("runtime error: integer divide by zero")
    r = abs(x) % abs(y) * (1 if x >= 0 else -1)
    return Int64(wrap64(r))


def _strslice(v: Any) -> list[bytes]:
    if isinstance(v, list):
        return [strval(x) for x in v if x is not None]
    if v is None:
        return []
    return [strval(v)]


def _join(sep: bytes, v: Any) -> bytes:
    parts = _strslice(v)
    limits.current().need(sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0),
                          "a joined value")
    return sep.join(parts)


def _split_parts(sep: bytes, s: bytes) -> list[bytes]:
    if not sep:
        return _runes(s)
    return s.split(sep)


def _dict(*pairs: Any) -> GoMap:
    out = GoMap()
    for i in range(0, len(pairs), 2):
        out[strval(pairs[i])] = pairs[i + 1] if i + 1 < len(pairs) else b""
    return out


def _default(d: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return d
    return given[0]


def _coalesce(*vs: Any) -> Any:
    for v in vs:
        if not empty(v):
            return v
    return None


def _append(lst: Any, v: Any) -> list[Any]:
    if not isinstance(lst, list):
        raise ExecError(f"error calling append: Cannot push on type {kind(lst)}")
    return [*lst, v]


def _quote(*vs: Any) -> bytes:
    return b" ".join(go_quote(strval(v)) for v in vs if v is not None)


def _squote(*vs: Any) -> bytes:
    return b" ".join(b"'" + strval(v) + b"'" for v in vs if v is not None)


def _sha(name: str) -> Any:
    return lambda s: hashlib.new(name, s).hexdigest().encode()


def _first(v: Any) -> Any:
    if not isinstance(v, list):
        raise ExecError(f"error calling first: Cannot find first on type {kind(v)}")
    return v[0] if v else None


def _last(v: Any) -> Any:
    if not isinstance(v, list):
        raise ExecError(f"error calling last: Cannot find last on type {kind(v)}")
    return v[-1] if v else None


def _until(n: int) -> list[int]:
    step = 1 if n > 0 else -1
    if abs(n) > limits.current().limits.max_iterations:
        raise limits.TemplateLimitExceeded("until would make more items than the loop budget")
    return list(range(0, n, step))


def _ternary(vt: Any, vf: Any, cond: bool) -> Any:
    return vt if cond else vf


def _has(needle: Any, haystack: Any) -> bool:
    if haystack is None:
        return False
    if not isinstance(haystack, list):
        raise ExecError(f"error calling has: Cannot find has on type {kind(haystack)}")
    return any(type(x) is type(needle) and x == needle for x in haystack)


def _sort_alpha(v: Any) -> StrList:
    if isinstance(v, list):
        return StrList(sorted(strval(x) for x in v))
    return StrList([strval(v)])


def _cat(*vs: Any) -> bytes:
    return b" ".join(strval(v) for v in vs if v is not None)


def _sprig_slice(lst: Any, *idx: Any) -> Any:
    if not isinstance(lst, list):
        raise ExecError(f"error calling slice: list should be type of slice or array but "
                        f"{kind(lst)}")
    bounds = [to_int64(i) for i in idx[:2]]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(lst)
    if not 0 <= start <= end <= len(lst):
        raise ExecError("error calling slice: slice bounds out of range")
    return lst[start:end]


def _fail(msg: bytes) -> Any:
    # its message can be a secret value piped in: not repeated
    raise ExecError("error calling fail: the template failed on purpose")


SPRIG: dict[str, Func] = {
    "fail": Func(_fail, "s"),
    "slice": Func(_sprig_slice, "a", "a"),
    "b64enc": Func(lambda s: base64.b64encode(s), "s"),
    "b64dec": Func(lambda s: _b64dec(s), "s"),
    "upper": Func(lambda s: _map_text(s, lambda t: t.upper()), "s"),
    "lower": Func(lambda s: _map_text(s, lambda t: t.lower()), "s"),
    "trim": Func(_trim, "s"),
    "trimAll": Func(lambda cut, s: _text(s).strip(_text(cut)).encode(), "ss"),
    "trimPrefix": Func(lambda a, s: s[len(a):] if s.startswith(a) else s, "ss"),
    "trimSuffix": Func(lambda a, s: s[:len(s) - len(a)] if a and s.endswith(a) else s, "ss"),
    "replace": Func(_replace, "sss"),
    "quote": Func(_quote, "", "a"),
    "squote": Func(_squote, "", "a"),
    "cat": Func(_cat, "", "a"),
    "toJson": Func(_to_json, "a"),
    "mustToJson": Func(_to_json, "a"),
    "fromJson": Func(_from_json, "s"),
    "mustFromJson": Func(_must_from_json, "s"),
    "default": Func(_default, "a", "a"),
    "empty": Func(empty, "a"),
    "coalesce": Func(_coalesce, "", "a"),
    "ternary": Func(_ternary, "aab"),
    "list": Func(lambda *vs: list(vs), "", "a"),
    "append": Func(_append, "aa"),
    "first": Func(_first, "a"),
    "last": Func(_last, "a"),
    "has": Func(_has, "aa"),
    "until": Func(_until, "i"),
    "sortAlpha": Func(_sort_alpha, "a"),
    "dict": Func(_dict, "", "a"),
    "get": Func(lambda d, k: d.get(k, b""), "ms"),
    "set": Func(lambda d, k, v: (d.__setitem__(k, v), d)[1], "msa"),
    "unset": Func(lambda d, k: (d.pop(k, None), d)[1], "ms"),
    "hasKey": Func(lambda d, k: k in d, "ms"),
    "keys": Func(lambda *ds: StrList(sorted(k for d in ds for k in d)), "", "m"),
    "values": Func(lambda d: [d[k] for k in sorted(d)], "m"),
    "join": Func(_join, "sa"),
    "split": Func(lambda sep, s: StrMap({f"_{i}".encode(): part for i, part
                                         in enumerate(_split_parts(sep, s))}), "ss"),
    "splitList": Func(lambda sep, s: StrList(_split_parts(sep, s)), "ss"),
    "contains": Func(lambda sub, s: sub in s, "ss"),
    "hasPrefix": Func(lambda a, s: s.startswith(a), "ss"),
    "hasSuffix": Func(lambda a, s: s.endswith(a), "ss"),
    "repeat": Func(_repeat, "is"),
    "indent": Func(_indent, "is"),
    "nindent": Func(lambda n, s: b"\n" + _indent(n, s), "is"),
    "sha1sum": Func(_sha("sha1"), "s"),
    "sha256sum": Func(_sha("sha256"), "s"),
    "toString": Func(strval, "a"),
    "atoi": Func(_atoi, "s"),
    "int": Func(lambda v: wrap64(to_int64(v)), "a"),
    "int64": Func(lambda v: Int64(to_int64(v)), "a"),
    "float64": Func(_to_float, "a"),
    "add": Func(lambda *vs: Int64(wrap64(sum(to_int64(v) for v in vs))), "", "a"),
    "add1": Func(lambda v: Int64(wrap64(to_int64(v) + 1)), "a"),
    "sub": Func(lambda a, c: Int64(wrap64(to_int64(a) - to_int64(c))), "aa"),
    "mul": Func(lambda a, *vs: Int64(_mul(a, vs)), "a", "a"),
    "div": Func(_div, "aa"),
    "mod": Func(_mod, "aa"),
    "max": Func(lambda a, *vs: Int64(max([to_int64(a), *map(to_int64, vs)])), "a", "a"),
    "min": Func(lambda a, *vs: Int64(min([to_int64(a), *map(to_int64, vs)])), "a", "a"),
}


def _mul(a: Any, vs: tuple[Any, ...]) -> int:
    n = to_int64(a)
    for v in vs:
        n = wrap64(n * to_int64(v))
    return n


def _b64dec(s: bytes) -> bytes:
    try:
        return go_b64decode(s)
    except ValueError as exc:
        return str(exc).encode()
