"""Go's ``regexp`` semantics for ESO-shaped rewrites (pure).

ESO compiles ``dataFrom[].rewrite[].regexp.source`` with Go's ``regexp`` package (RE2 syntax,
leftmost-first matching, no lookaround or backreferences) and applies it with
``ReplaceAllString``. Python's ``re`` differs in syntax and in one visible way: after a
non-empty match it also replaces the empty match that follows (``(.*)`` -> ``dev-$1`` turns
``password`` into ``dev-passworddev-``). Here patterns are compiled by RE2 itself (the
``google-re2`` bindings) and the replacement loop and ``$`` template expansion follow Go's:

- an empty match right after the previous match is not replaced;
- ``$$`` is a ``$``; ``$name`` / ``${name}`` name a group, where the name is the longest run of
  letters, digits and ``_`` (so ``$1x`` is the group named ``1x``, usually empty; write
  ``${1}x``); an all-digit name without a leading zero is a group number; a group that does not
  exist or did not take part expands to nothing; a ``$`` that starts no valid name is literal.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

import re2

from secretsync.errors import InvalidInput

_MAX_GROUP_NUMBER = 100_000_000  # Go stops parsing a group number here (then it is a name)


def _options() -> Any:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would otherwise log every bad pattern to stderr
    return opts


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _options())


def _any_byte_escape(pattern: str) -> bool:
    """Whether ``pattern`` uses ``\\C`` (any byte): RE2 accepts it, Go does not."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] == "\\":
            if pattern[i + 1] == "C":
                return True
            i += 1
        i += 1
    return False


def compile_go(pattern: str, *, what: str) -> Any:
    """The compiled RE2 pattern, or ``InvalidInput`` naming ``what`` and RE2's reason."""
    if _any_byte_escape(pattern):
        raise InvalidInput(f"{what}: invalid regular expression (invalid escape sequence: \\C)")
    try:
        return _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidInput(f"{what}: invalid regular expression ({reason})") from None


def check(pattern: str, *, what: str) -> str:
    """``pattern`` if RE2 (Go's syntax) accepts it; else ``InvalidInput`` naming ``what``."""
    compile_go(pattern, what=what)
    return pattern


def _is_name_char(c: str) -> bool:
    """Go's ``unicode.IsLetter || unicode.IsDigit || '_'``."""
    cat = unicodedata.category(c)
    return cat[0] == "L" or cat == "Nd" or c == "_"


def _extract(template: str, pos: int) -> tuple[str, int] | None:
    """The group name after a ``$`` at ``template[pos:]`` and the position after it, or
    ``None`` when malformed (then the ``$`` is literal text)."""
    brace = pos < len(template) and template[pos] == "{"
    i = pos + 1 if brace else pos
    start = i
    while i < len(template) and _is_name_char(template[i]):
        i += 1
    if i == start:
        return None
    name = template[start:i]
    if brace:
        if i >= len(template) or template[i] != "}":
            return None
        i += 1
    return name, i


def _group_number(name: str) -> int:
    """Go's rule: ASCII digits only, below 1e8, no leading zero; else -1 (a name)."""
    if not name.isascii() or not name.isdigit() or (name[0] == "0" and len(name) > 1):
        return -1
    num = int(name)
    return num if num < _MAX_GROUP_NUMBER else -1


def expand(template: str, match: Any, names: dict[str, int]) -> str:
    """Go's ``Regexp.Expand`` of ``template`` for one match."""
    out: list[str] = []
    pos = 0
    while True:
        dollar = template.find("$", pos)
        if dollar < 0:
            out.append(template[pos:])
            return "".join(out)
        out.append(template[pos:dollar])
        pos = dollar + 1
        if pos < len(template) and template[pos] == "$":
            out.append("$")
            pos += 1
            continue
        parsed = _extract(template, pos)
        if parsed is None:
            out.append("$")
            continue
        name, pos = parsed
        num = _group_number(name)
        index = num if num >= 0 else names.get(name, -1)
        if 0 <= index <= match.re.groups:
            text = match.group(index)
            if text is not None:
                out.append(text)


def replace_all(pattern: str, src: str, template: str, *, what: str = "regexp") -> str:
    """Go's ``Regexp.ReplaceAllString(src, template)`` with ``pattern`` compiled by RE2."""
    regexp = compile_go(pattern, what=what)
    names: dict[str, int] = dict(regexp.groupindex)
    out: list[str] = []
    last_end = 0
    search_pos = 0
    while search_pos <= len(src):
        m = regexp.search(src, search_pos)
        if m is None:
            break
        start, end = m.span()
        out.append(src[last_end:start])
        # An empty match right after the previous match is not replaced (Go's rule).
        if end > last_end or start == 0:
            out.append(expand(template, m, names))
        last_end = end
        # Always advance by at least one character.
        search_pos = max(search_pos + 1, end)
    out.append(src[last_end:])
    return "".join(out)
