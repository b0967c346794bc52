"""Go's encodings, byte for byte: base64 decoding with Go's error offsets, strconv.Quote, and
encoding/json's output (sorted keys, ``<>&`` escaped, invalid UTF-8 as ``\\ufffd``, Go's float
format); JSON read back as Go reads it into ``interface{}`` (numbers are float64).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from secretsync.reconcile.gotemplate.values import GoMap, format_float

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_INDEX = {c: i for i, c in enumerate(_B64)}


def go_b64decode(src: bytes) -> bytes:
    """Go's base64.StdEncoding.DecodeString: newlines skipped, padding required; an error
    names the offset of the first bad byte as Go does."""
    out = bytearray()
    si, n = 0, len(src)
    while True:
        quantum: list[int] = []
        while len(quantum) < 4:
            if si == n:
                if not quantum:
                    return bytes(out)
                raise ValueError(f"illegal base64 data at input byte {si - len(quantum)}")
            c = src[si]
            si += 1
            if c in _B64_INDEX:
                quantum.append(_B64_INDEX[c])
                continue
            if c in (10, 13):
                continue
            if c != 61:
                raise ValueError(f"illegal base64 data at input byte {si - 1}")
            j = len(quantum)
            if j < 2:
                raise ValueError(f"illegal base64 data at input byte {si - 1}")
            if j == 2:
                while si < n and src[si] in (10, 13):
                    si += 1
                if si == n:
                    raise ValueError(f"illegal base64 data at input byte {n}")
                if src[si] != 61:
                    raise ValueError(f"illegal base64 data at input byte {si - 1}")
                si += 1
            while si < n and src[si] in (10, 13):
                si += 1
            if si < n:
                raise ValueError(f"illegal base64 data at input byte {si}")
            _emit(out, quantum)
            return bytes(out)
        _emit(out, quantum)


def _emit(out: bytearray, q: list[int]) -> None:
    val = 0
    for d in q + [0] * (4 - len(q)):
        val = val << 6 | d
    out += val.to_bytes(3, "big")[:len(q) - 1 if len(q) < 4 else 3]


def go_quote(s: bytes) -> bytes:
    """strconv.Quote: printable UTF-8 kept, the rest escaped; invalid bytes as \\xNN."""
    out = ['"']
    i = 0
    while i < len(s):
        ch, size = decode_rune(s, i)
        if ch is None:
            out.append(f"\\x{s[i]:02x}")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif ch == " " or (ch.isprintable() and not unicodedata.category(ch).startswith("Z")):
            out.append(ch)
        else:
            special = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                       "\t": "\\t", "\v": "\\v"}.get(ch)
            cp = ord(ch)
            out.append(special or (f"\\x{cp:02x}" if cp < 0x80 else
                                   f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"))
        i += size
    out.append('"')
    return "".join(out).encode()


def decode_rune(s: bytes, i: int) -> tuple[str | None, int]:
    for size in (1, 2, 3, 4):
        try:
            return s[i:i + size].decode("utf-8"), size
        except UnicodeDecodeError:
            continue
    return None, 1


def to_json_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {k.decode("utf-8", "replace"): to_json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json_value(x) for x in v]
    return v


def from_json_value(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, dict):
        return GoMap({k.encode(): from_json_value(x) for k, x in v.items()})
    if isinstance(v, list):
        return [from_json_value(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def go_json(v: Any) -> bytes:
    """encoding/json: sorted keys, no spaces, <>& escaped, invalid UTF-8 as \\ufffd, floats in
    Go's format ('f' unless the exponent is below -6 or from 21 on)."""
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-6 or abs(v) >= 1e21):
            text = format_float(v, "e").decode()
            return text.replace("e-0", "e-").replace("e+0", "e+").encode()
        return format_float(v, "f").decode().encode()
    if isinstance(v, dict):
        items = (go_json(k) + b":" + go_json(x) for k, x in sorted(v.items()))
        return b"{" + b",".join(items) + b"}"
    if isinstance(v, list):
        return b"[" + b",".join(go_json(x) for x in v) + b"]"
    if isinstance(v, bytes):
        v = v.decode("utf-8", "surrogateescape")
    text = json.dumps(v, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    text = _SURROGATE.sub(r"\\ufffd", text)
    return text.encode("utf-8", "surrogatepass")


_SURROGATE = re.compile("[\udc80-\udcff]")
