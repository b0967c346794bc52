"""text/template's own functions: comparisons, ``not``, ``len``, ``index``, ``slice``,
``print``/``printf``/``println`` (with a Go-like ``fmt`` subset) and ``urlquery``.

``and`` and ``or`` are not here: they see their arguments unevaluated (execute.py).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote_plus

from secretsync.reconcile import template_limits as limits
from secretsync.reconcile.gotemplate.execute import Func
from secretsync.reconcile.gotemplate.values import (
    MISSING,
    ExecError,
    GoMap,
    eq,
    format_float,
    kind,
    lt,
    sprint,
    sprint_value,
    sprintln,
    truth,
    type_name,
)


def _len(v: Any) -> int:
    if isinstance(v, bytes | list | dict):
        return len(v)
    if v is None or v is MISSING:
        raise ExecError("len of nil pointer")
    raise ExecError(f"len of type {type_name(v)}")


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None or item is MISSING:
            raise ExecError("index of untyped nil")
        if isinstance(item, bytes | list):
            if kind(key) != "int":
                raise ExecError(f"cannot index slice/array with type {type_name(key)}")
            if not 0 <= key < len(item):
                raise ExecError(f"index out of range: {key}")
            item = item[key]
        elif isinstance(item, dict):
            if not isinstance(key, bytes):
                raise ExecError(f"value has type {type_name(key)}; should be string")
            item = item.get(key, item.zero if isinstance(item, GoMap) else None)
        else:
            raise ExecError(f"can't index item of type {type_name(item)}")
    return item


_VERB = re.compile(rb"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])?")


def go_sprintf(fmt: bytes, *args: Any) -> bytes:
    """``fmt.Sprintf`` for %v %s %d %q %x %X %f %e %g %t %c %%, with flags and widths; widths
    are checked against the size limit first."""
    out: list[bytes] = []
    pos, argi = 0, 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb is None:
            out.append(b"%!(NOVERB)")
            continue
        if verb == b"%":
            out.append(b"%")
            continue
        w = int(width) if width else 0
        limits.current().need(w + (int(prec) if prec else 0), "a formatted value")
        if argi >= len(args):
            out.append(b"%!" + verb + b"(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        p = int(prec) if prec is not None else None
        if verb in (b"v", b"s") and isinstance(arg, list | dict) and w:
            # Go pads each element of a slice or map, not the whole
            def one(x: Any, v: str = verb.decode(), p: int | None = p, w: int = w,
                    flags: bytes = flags) -> bytes:
                return _pad(_format_one(v, x, flags, p), w, flags, v, x)
            if isinstance(arg, list):
                out.append(b"[" + b" ".join(one(x) for x in arg) + b"]")
            else:
                out.append(b"map[" + b" ".join(one(k) + b":" + one(arg[k])
                                               for k in sorted(arg)) + b"]")
            continue
        out.append(_pad(_format_one(verb.decode(), arg, flags, p), w, flags, verb.decode(), arg))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = b", ".join(type_name(a).encode() + b"=" + sprint_value(a, False)
                           for a in args[argi:])
        out.append(b"%!(EXTRA " + extra + b")")
    return b"".join(out)


def _pad(text: bytes, w: int, flags: bytes, verb: str, arg: Any) -> bytes:
    bad = b"%!" + verb.encode() + b"("
    if text.startswith(bad) and arg is not None and b"=" in text:  # Go pads the value inside
        head, value = text[:-1].split(b"=", 1)
        return head + b"=" + _pad(value, w, flags, "v", arg) + b")"
    if w <= len(text):
        return text
    pad = w - len(text)
    if b"-" in flags:
        return text + b" " * pad
    if b"0" in flags and verb in "dfegxX" and kind(arg) in ("int", "float"):
        sign = text[:1] if text[:1] in (b"-", b"+") else b""
        return sign + b"0" * pad + text[len(sign):]
    return b" " * pad + text


def _format_one(verb: str, arg: Any, flags: bytes, prec: int | None) -> bytes:
    k = kind(arg)
    if verb == "v" or (verb == "s" and k in ("string", "slice", "map")):
        if k == "float" and prec is not None:
            return format_float(arg, "g", prec)
        text = sprint_value(arg, False)
        return text[:prec] if verb == "s" and prec is not None and k == "string" else text
    if verb == "d" and k == "int":
        sign = b"+" if b"+" in flags else b" " if b" " in flags else b""
        return (sign if arg >= 0 else b"") + str(int(arg)).encode()
    if verb == "t" and k == "bool":
        return b"true" if arg else b"false"
    if verb == "q" and k == "string":
        from secretsync.reconcile.gotemplate.encoding import go_quote
        return go_quote(arg)
    if verb in "xX" and k in ("string", "int"):
        text = arg.hex().encode() if k == "string" else format(arg, "x").encode()
        if b"#" in flags:
            text = text.replace(b"-", b"-0x") if text.startswith(b"-") else b"0x" + text
        return text.upper().replace(b"0X", b"0X") if verb == "X" else text
    if verb in "feEgG" and k == "float":
        text = format_float(arg, verb.lower(), 6 if prec is None and verb in "fe" else
                            (prec if prec is not None else -1))
        return text.upper() if verb in "EG" else text
    if verb == "c" and k == "int":
        return chr(arg).encode() if 0 <= arg <= 0x10FFFF else "\ufffd".encode()
    if arg is None:
        return b"%!" + verb.encode() + b"(<nil>)"
    shown = sprint_value(arg, False)
    return b"%!" + verb.encode() + b"(" + type_name(arg).encode() + b"=" + shown + b")"


def _printf(fmt: bytes, *args: Any) -> bytes:
    return go_sprintf(fmt, *args)


def _print(*args: Any) -> bytes:
    limits.current().need(sum(limits.cost(a) for a in args), "a printed value")
    return sprint(list(args))


def _println(*args: Any) -> bytes:
    limits.current().need(sum(limits.cost(a) + 1 for a in args), "a printed value")
    return sprintln(list(args))


def _escaper_text(args: tuple[Any, ...]) -> bytes:
    """What html, js and urlquery escape: Go prints a nil argument as <no value> here."""
    if len(args) == 1 and isinstance(args[0], bytes):
        return args[0]
    return sprint([b"<no value>" if a is None else a for a in args])


def _urlquery(*args: Any) -> bytes:
    return quote_plus(_escaper_text(args)).encode()


def _html(*args: Any) -> bytes:
    text = _escaper_text(args)
    for raw, esc in ((b"&", b"&amp;"), (b"<", b"&lt;"), (b">", b"&gt;"), (b"'", b"&#39;"),
                     (b'"', b"&#34;"), (b"\x00", "\ufffd".encode())):
        text = text.replace(raw, esc)
    return text


_JS = {ord("\\"): "\\\\", ord("'"): "\\'", ord('"'): '\\"', ord("<"): "\\u003C",
       ord(">"): "\\u003E", ord("&"): "\\u0026", ord("="): "\\u003D"}


def _js(*args: Any) -> bytes:
    """Go's JSEscape: on bytes; invalid UTF-8 passes through as it is."""
    from secretsync.reconcile.gotemplate.encoding import decode_rune

    text = _escaper_text(args)
    out: list[bytes] = []
    i = 0
    while i < len(text):
        ch, size = decode_rune(text, i)
        if ch is None:
            out.append(text[i:i + 1])
        elif ord(ch) in _JS:
            out.append(_JS[ord(ch)].encode())
        elif ord(ch) < 0x20 or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}".encode())
        else:
            out.append(text[i:i + size])
        i += size
    return b"".join(out)


def _ne(a: Any, c: Any) -> bool:
    return not eq(a, c)


BUILTINS: dict[str, Func] = {
    "not": Func(lambda v: not truth(v), "a"),
    "len": Func(_len, "a"),
    "index": Func(_index, "a", "a"),
    "print": Func(_print, "", "a"),
    "println": Func(_println, "", "a"),
    "printf": Func(_printf, "s", "a"),
    "urlquery": Func(_urlquery, "", "a"),
    "html": Func(_html, "", "a"),
    "js": Func(_js, "", "a"),
    "eq": Func(eq, "a", "a"),
    "ne": Func(_ne, "aa"),
    "lt": Func(lt, "aa"),
    "le": Func(lambda a, c: lt(a, c) or eq(a, c), "aa"),
    "gt": Func(lambda a, c: not (lt(a, c) or eq(a, c)), "aa"),
    "ge": Func(lambda a, c: not lt(a, c), "aa"),
}
# and/or are evaluated lazily by the executor; registered so the parser knows the names
BUILTIN_NAMES = frozenset(BUILTINS) | {"and", "or"}
