"""Go's value model for templates, in Python: what is a string, a map, nil, and how each prints.

Go strings are byte strings, and secret values reach ESO's templates as strings made from the
Secret's bytes; so a string here is ``bytes`` (binary values such as a PKCS#12 bundle after
``b64dec`` pass through untouched) and text conversion happens only where Go's would (``upper``,
``quote``, JSON). Other kinds: ``bool``, ``int`` (Go int/int64, wrapped to 64 bits where Go
would wrap), ``float`` (float64), ``None`` (nil), ``list`` (slices), ``GoMap`` (maps, keys
``bytes``). ``StrMap`` is a ``map[string]string`` (the data ESO gives a template and sprig's
``split``), whose missing entries are ``""`` rather than nil. ``MISSING`` is "no value" (an
invalid ``reflect.Value``), which prints as ``<no value>``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from secretsync.errors import InvalidTemplate


class ExecError(InvalidTemplate):
    """A template failed while it ran (Go's ``template: ...: error calling ...``)."""


class GoMap(dict[bytes, Any]):
    """``map[string]interface{}``: a missing entry is nil."""

    zero: Any = None


class StrMap(GoMap):
    """``map[string]string``: a missing entry is the empty string."""

    zero: Any = b""


class StrList(list[Any]):
    """``[]string`` (from ``splitList``, ``keys``): prints like any slice."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def wrap64(n: int) -> int:
    """Go's int64 arithmetic wraps around."""
    n &= (1 << 64) - 1
    return n - (1 << 64) if n >= 1 << 63 else n


def b(text: str) -> bytes:
    return text.encode()


def kind(v: Any) -> str:
    """Go's reflect kind, coarsely: bool, int, float, string, slice, map, nil."""
    if v is None or v is MISSING:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, bytes):
        return "string"
    if isinstance(v, list):
        return "slice"
    if isinstance(v, dict):
        return "map"
    return "other"


def type_name(v: Any) -> str:
    """The Go type name used in error messages."""
    if isinstance(v, StrMap):
        return "map[string]string"
    if isinstance(v, StrList):
        return "[]string"
    if isinstance(v, Int64):
        return "int64"
    return {"nil": "interface {}", "bool": "bool", "int": "int", "float": "float64",
            "string": "string", "slice": "[]interface {}", "map": "map[string]interface {}"
            }.get(kind(v), "interface {}")


def truth(v: Any) -> bool:
    """Go's ``template.IsTrue``: zero values and empty containers are false."""
    if v is None or v is MISSING:
        return False
    if isinstance(v, bool | int | float | bytes | list | dict):
        return bool(v)
    return True


# --- printing (fmt's %v) -------------------------------------------------------------------


def format_float(f: float, verb: str = "v", prec: int = -1) -> bytes:
    """Go's strconv.FormatFloat for 'g' (shortest when ``prec`` < 0), 'e' and 'f'."""
    if math.isnan(f):
        return b"NaN"
    if math.isinf(f):
        return b"+Inf" if f > 0 else b"-Inf"
    if verb == "f":
        return (f"{f:.{prec}f}" if prec >= 0 else _shortest_f(f)).encode()
    if verb == "e":
        text = f"{f:.{prec}e}" if prec >= 0 else _shortest_e(f)
        return _go_exp(text).encode()
    # 'g' / 'v'
    if prec >= 0:
        return _go_exp(f"{f:.{prec or 1}g}").encode()
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    assert isinstance(exp, int)
    nd = len(digits)
    if digits == (0,):
        return b"-0" if sign else b"0"
    e10 = nd + exp - 1
    if e10 < -4 or e10 >= 6:  # %v is %g with the shortest digits: Go's threshold is 6
        return _go_exp(_shortest_e(f)).encode()
    return _shortest_f(f).encode()


def _shortest_f(f: float) -> str:
    d = Decimal(repr(f))
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "-0" if text == "-0" else text


def _shortest_e(f: float) -> str:
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    e10 = len(ds) + exp - 1
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{e10:+d}"


def _go_exp(text: str) -> str:
    """Python's exponent (``e+6``/``e+06``) as Go writes it: sign and at least two digits."""
    if "e" not in text:
        return text
    mant, exp = text.split("e")
    sign = "-" if exp.startswith("-") else "+"
    digits = exp.lstrip("+-").lstrip("0") or "0"
    return f"{mant}e{sign}{digits.zfill(2)}"


def sprint_value(v: Any, top: bool = True) -> bytes:
    """``fmt.Sprint`` of one operand (%v)."""
    if v is MISSING:
        return b"<no value>" if top else b"<nil>"
    if v is None:
        return b"<nil>"
    if isinstance(v, bool):
        return b"true" if v else b"false"
    if isinstance(v, int):
        return str(v).encode()
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, bytes):
        return v
    if isinstance(v, list):
        return b"[" + b" ".join(sprint_value(x, False) for x in v) + b"]"
    if isinstance(v, dict):
        items = (k + b":" + sprint_value(v[k], False) for k in sorted(v))
        return b"map[" + b" ".join(items) + b"]"
    return str(v).encode()


def sprint(args: list[Any]) -> bytes:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out: list[bytes] = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, bytes) and not isinstance(args[i - 1], bytes):
            out.append(b" ")
        out.append(sprint_value(None if a is MISSING else a, False))
    return b"".join(out)


def sprintln(args: list[Any]) -> bytes:
    return b" ".join(sprint_value(None if a is MISSING else a, False) for a in args) + b"\n"


# --- comparison (Go 1.18+ eq/ne/lt/le/gt/ge) -------------------------------------------------


def _basic(v: Any) -> str | None:
    k = kind(v)
    return k if k in ("bool", "int", "float", "string") else None


def eq(a: Any, *others: Any) -> bool:
    """True when ``a`` equals any of ``others``; basic kinds only, and of the same kind."""
    if not others:
        raise ExecError("missing argument for comparison")
    ka = _basic(a) or kind(a)
    for o in others:
        ko = _basic(o) or kind(o)
        if ka != ko:
            if "nil" in (ka, ko):
                continue
            raise ExecError("incompatible types for comparison")
        if ka == "nil":
            return True
        if _basic(a) is None:
            raise ExecError(f"non-comparable type {type_name(a)}")
        if a == o:
            return True
    return False


def lt(a: Any, c: Any) -> bool:
    ka, kc = _basic(a), _basic(c)
    if ka is None or kc is None or ka == "bool" or kc == "bool":
        raise ExecError("invalid type for comparison")
    if ka != kc:
        raise ExecError("incompatible types for comparison")
    return bool(a < c)


class Int64(int):
    """A Go ``int64`` (sprig's arithmetic returns these): it is not assignable to an ``int``
    parameter, exactly as in Go."""
