"""The lexer of Go's text/template, over bytes: text, actions, trim markers and comments.

A template is split into text and ``{{ ... }}`` actions. ``{{- `` and `` -}}`` (the dash next
to the delimiter *and* a space on its other side) trim all white space on that side of the
action; ``{{/* ... */}}`` is a comment that must sit right inside its delimiters. Inside an
action the tokens are Go's: identifiers and keywords, ``.field``, ``$var``, numbers, quoted,
raw and character strings, ``( ) | , := =`` and white space, which separates arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from secretsync.errors import InvalidTemplate

LEFT, RIGHT = b"{{", b"}}"
SPACE = b" \t\r\n"
KEYWORDS = frozenset({"block", "break", "continue", "define", "else", "end", "if", "range",
                      "nil", "template", "with", "true", "false"})


class TemplateSyntaxError(InvalidTemplate):
    """The template does not parse (Go's ``template: ...: unexpected ...``)."""


@dataclass(frozen=True)
class Tok:
    kind: str  # text, left, right, space, ident, keyword, field, var, number, string,
    #            raw, char, ( ) | , := = eof
    val: bytes
    line: int


_NUMBER = re.compile(rb"[+-]?(0[xX][0-9a-fA-F_]*(\.[0-9a-fA-F_]*)?([pP][+-]?[0-9_]+)?"
                     rb"|0[bB][01_]+|0[oO][0-7_]+"
                     rb"|([0-9][0-9_]*)?\.?[0-9_]*([eE][+-]?[0-9_]+)?)i?")
_IDENT = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*")
_STRING = re.compile(rb'"(?:[^"\\\n]|\\.)*"')
_CHAR = re.compile(rb"'(?:[^'\\\n]|\\.)+'")


def _err(line: int, msg: str) -> TemplateSyntaxError:
    return TemplateSyntaxError(f"template syntax error at line {line}: {msg}")


def lex(src: bytes) -> list[Tok]:
    """All tokens of ``src``; trim markers already applied to the neighbouring text."""
    toks: list[Tok] = []
    pos, line, n = 0, 1, len(src)
    while pos < n:
        start = src.find(LEFT, pos)
        if start < 0:
            toks.append(Tok("text", src[pos:], line))
            break
        text = src[pos:start]
        after = start + 2
        if src[after:after + 1] == b"-" and src[after + 1:after + 2] in (b" ", b"\t", b"\r", b"\n"):
            text = text.rstrip(SPACE)
            after += 2
        if text:
            toks.append(Tok("text", text, line))
        line += src.count(b"\n", pos, start)
        pos = _lex_action(src, after, line, toks)
        line += src.count(b"\n", start, pos)
        if toks and toks[-1].kind == "trim":
            toks.pop()
            while pos < n and src[pos] in SPACE:
                line += src[pos] == 0x0A
                pos += 1
    toks.append(Tok("eof", b"", line))
    return toks


def _right_at(src: bytes, pos: int) -> tuple[int, bool] | None:
    """At ``pos``: the end of an action (``}}`` or `` -}}``), as (end position, trimmed)."""
    if src.startswith(RIGHT, pos):
        return pos + 2, False
    if src[pos:pos + 1] in (b" ", b"\t", b"\r", b"\n") and src.startswith(b"-" + RIGHT, pos + 1):
        return pos + 4, True
    return None


def _trim_right_at(src: bytes, pos: int) -> bool:
    return src[pos:pos + 1] in (b" ", b"\t", b"\r", b"\n") and src.startswith(b"-}}", pos + 1)


def _lex_action(src: bytes, pos: int, line: int, toks: list[Tok]) -> int:
    n = len(src)
    # a comment must follow the delimiter (and trim marker) directly
    if src.startswith(b"/*", pos):
        end = src.find(b"*/", pos + 2)
        if end < 0:
            raise _err(line, "unclosed comment")
        right = _right_at(src, end + 2)
        if right is None:
            raise _err(line, "comment ends before closing delimiter")
        if right[1]:
            toks.append(Tok("trim", b"", line))
        return right[0]
    toks.append(Tok("left", b"", line))
    parens = 0
    while True:
        if pos >= n:
            raise _err(line, "unclosed action")
        if src.startswith(RIGHT, pos):
            if parens:
                raise _err(line, "unclosed left paren")
            toks.append(Tok("right", b"", line))
            return pos + 2
        c = src[pos:pos + 1]
        if c in (b" ", b"\t", b"\r", b"\n"):
            end = pos
            while end < n and src[end] in SPACE and not _trim_right_at(src, end):
                end += 1
            if end > pos:
                line += src.count(b"\n", pos, end)
                toks.append(Tok("space", b" ", line))
                pos = end
            else:  # " -}}"
                if parens:
                    raise _err(line, "unclosed left paren")
                toks.append(Tok("right", b"", line))
                toks.append(Tok("trim", b"", line))
                return pos + 4
            continue
        if c == b"(":
            parens += 1
        elif c == b")":
            parens -= 1
            if parens < 0:
                raise _err(line, "unexpected right paren")
        if c in (b"(", b")", b"|", b","):
            toks.append(Tok(c.decode(), c, line))
            pos += 1
        elif src.startswith(b":=", pos):
            toks.append(Tok(":=", b":=", line))
            pos += 2
        elif c == b"=":
            toks.append(Tok("=", b"=", line))
            pos += 1
        elif c == b'"':
            m = _STRING.match(src, pos)
            if m is None:
                raise _err(line, "unterminated quoted string")
            toks.append(Tok("string", m.group(), line))
            pos = m.end()
        elif c == b"`":
            end = src.find(b"`", pos + 1)
            if end < 0:
                raise _err(line, "unterminated raw quoted string")
            toks.append(Tok("raw", src[pos:end + 1], line))
            line += src.count(b"\n", pos, end)
            pos = end + 1
        elif c == b"'":
            m = _CHAR.match(src, pos)
            if m is None:
                raise _err(line, "unterminated character constant")
            toks.append(Tok("char", m.group(), line))
            pos = m.end()
        elif c == b"$":
            m = _IDENT.match(src, pos + 1)
            end = m.end() if m else pos + 1
            toks.append(Tok("var", src[pos:end], line))
            pos = end
        elif c == b"." and pos + 1 < n and (src[pos + 1:pos + 2].isalpha()
                                             or src[pos + 1:pos + 2] in (b"_",)
                                             or src[pos + 1] >= 0x80):
            m = _IDENT.match(src, pos + 1)
            assert m is not None
            toks.append(Tok("field", m.group(), line))
            pos = m.end()
        elif c.isdigit() or (c in (b"+", b"-", b".") and src[pos + 1:pos + 2].isdigit()):
            m = _NUMBER.match(src, pos)
            assert m is not None
            end = m.end()
            if end < n and (_IDENT.match(src, end) or src[end:end + 1].isdigit()):
                raise _err(line, f"bad number syntax: {src[pos:end + 1]!r}")
            toks.append(Tok("number", src[pos:end], line))
            pos = end
        elif c == b".":
            toks.append(Tok("dot", b".", line))
            pos += 1
        else:
            m = _IDENT.match(src, pos)
            if m is None:
                raise _err(line, f"unrecognized character in action: {c!r}")
            word = m.group()
            toks.append(Tok("keyword" if word.decode("latin-1") in KEYWORDS else "ident",
                            word, line))
            pos = m.end()


# --- literals ----------------------------------------------------------------------------


def unquote(tok: Tok) -> bytes:
    if tok.kind == "raw":
        return tok.val[1:-1].replace(b"\r", b"")
    return _go_unquote(tok.val, tok)


_SIMPLE = {ord("a"): 7, ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9,
           ord("v"): 11, ord("\\"): 92, ord("'"): 39, ord('"'): 34}


def _go_unquote(lit: bytes, tok: Tok) -> bytes:
    """Go's string literal escapes (\\xNN and octal are bytes, \\u and \\U are UTF-8)."""
    body, out, i = lit[1:-1], bytearray(), 0
    quote = lit[0]
    while i < len(body):
        c = body[i]
        if c != 0x5C:
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _SIMPLE and (e != 39 or quote == 39) and (e != 34 or quote == 34):
            out.append(_SIMPLE[e])
            i += 2
        elif e == ord("x") and _hex(body[i + 2:i + 4], 2):
            out.append(int(body[i + 2:i + 4], 16))
            i += 4
        elif e in (ord("u"), ord("U")) and _hex(body[i + 2:i + (6 if e == ord("u") else 10)],
                                                4 if e == ord("u") else 8):
            width = 4 if e == ord("u") else 8
            cp = int(body[i + 2:i + 2 + width], 16)
            if cp > 0x10FFFF or 0xD800 <= cp < 0xE000:
                raise _err(tok.line, "invalid syntax in quoted string")
            out += chr(cp).encode()
            i += 2 + width
        elif 0x30 <= e <= 0x37 and len(body) >= i + 4 and all(0x30 <= d <= 0x37
                                                                for d in body[i + 1:i + 4]):
            value = int(body[i + 1:i + 4], 8)
            if value > 255:
                raise _err(tok.line, "invalid syntax in quoted string")
            out.append(value)
            i += 4
        else:
            raise _err(tok.line, "invalid syntax in quoted string")
    return bytes(out)


def _hex(chunk: bytes, width: int) -> bool:
    return len(chunk) == width and all(chr(d) in "0123456789abcdefABCDEF" for d in chunk)


def number(tok: Tok, literal: Any) -> Any:
    """A number or character token as ``literal(kind, value, is_int=, is_float=)``."""
    text = tok.val.decode("latin-1")
    if tok.kind == "char":
        raw = _go_unquote(tok.val, tok).decode("utf-8", "strict") if b"\\" in tok.val \
            else tok.val[1:-1].decode("utf-8", "replace")
        if len(raw) != 1:
            raise _err(tok.line, "malformed character constant")
        return literal("int", ord(raw), is_int=True, is_float=True)
    if text.endswith("i"):
        raise _err(tok.line, "complex numbers are not supported")
    clean = text.replace("_", "")
    value: Any
    try:
        hexa = clean.lower().lstrip("+-").startswith("0x")
        if any(c in clean.lower() for c in ".ep") and not hexa:
            value = float(clean)
            if value in (float("inf"), float("-inf")):
                raise ValueError(text)
            return literal("float", value, is_int=value.is_integer(), is_float=True)
        if clean.lower().lstrip("+-").startswith("0x") and "p" in clean.lower():
            value = float.fromhex(clean)
            return literal("float", value, is_int=value.is_integer(), is_float=True)
        value = int(clean, 0) if not _legacy_octal(clean) else int(clean.replace("0", "0o", 1), 0)
    except ValueError:
        raise _err(tok.line, f"bad number syntax: {text!r}") from None
    return literal("int", value, is_int=True, is_float=True)


def _legacy_octal(text: str) -> bool:
    digits = text.lstrip("+-")
    return len(digits) > 1 and digits[0] == "0" and digits[1:].isdigit()
