"""Bounds on every template render: memory, time, loop iterations and call depth.

Templates come from Git -- from anyone who can open a pull request against any tenant's
manifests -- and they render inside the one controller process that serves every tenant.
Jinja2's sandbox stops attribute tricks but not arithmetic: a 60-byte
``{{ 'x' * 300000000 }}`` once took the controller from 65 MB to a 1.39 GB peak, and a pod
with a 512Mi limit is OOM-killed again on every retry. So a render is also *bounded*:

- every value a template makes -- an operator (``*``, ``+``, ``%``, ``**``), a concatenation
  (``~``), a joined block, a method or filter call -- is at most ``max_bytes`` long. Where the
  size is known before the work is done (repetition, padding widths, ``join``, ``replace``,
  printf widths, powers) it is checked *before* the allocation; every result is also counted
  against a per-render work budget (``work_factor * max_bytes``), so many medium values cannot
  add up to a large one;
- the output of all keys of one Secret together is at most ``max_bytes``, counted while it
  streams, so a render stops at the bound rather than after building the whole text;
- every ``for`` loop counts its iterations against a budget and every call its depth, and the
  clock is read at each of those points, so a render also stops at its deadline.

A render that hits a bound raises ``TemplateLimitExceeded`` (an ``InvalidTemplate``), naming
the bound, never a value. It is a property of the template and its inputs, so the controllers
do not retry it until the object's spec changes.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from secretsync.errors import InvalidTemplate


class TemplateLimitExceeded(InvalidTemplate):
    """A render hit one of its bounds (size, work, time, iterations, depth)."""


@dataclass(frozen=True)
class Limits:
    """The bounds of one render (one Secret's ``template.data``, all keys together)."""

    max_bytes: int = 1 << 20  # output per Secret, and any single value made on the way
    timeout: float = 2.0  # seconds of wall-clock time per render
    work_factor: int = 8  # all values made on the way: at most work_factor * max_bytes
    max_iterations: int = 1_000_000  # loop iterations, all loops together
    max_depth: int = 64  # nested calls (macros, recursive loops)

    @property
    def work_bytes(self) -> int:
        return self.work_factor * self.max_bytes


_default = Limits()
# Integers are bounded too (``2 ** 10 ** 9`` is a memory and CPU bomb of its own): no template
# needs more than this many bits.
MAX_INT_BITS = 1 << 16


def set_default_limits(limits: Limits) -> None:
    """The controller's settings (its environment knobs) replace the defaults once at start."""
    global _default
    _default = limits


def default_limits() -> Limits:
    return _default


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} bytes"


class Budget:
    """What one render may still spend; read by every guard through a thread-local."""

    __slots__ = ("deadline", "depth", "iterations", "limits", "work")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout
        self.work = limits.work_bytes
        self.iterations = limits.max_iterations
        self.depth = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitExceeded(
                f"the render took longer than {self.limits.timeout:g} s (render deadline)")

    def need(self, n: int, what: str = "a value") -> None:
        """Refuse, before allocating, ``what`` that would be ``n`` bytes long."""
        if n > self.limits.max_bytes:
            raise TemplateLimitExceeded(
                f"{what} would be {_size(n)}, over the limit of {_size(self.limits.max_bytes)}")
        if n > self.work:
            raise TemplateLimitExceeded(
                f"the values made by the render add up to more than "
                f"{_size(self.limits.work_bytes)} (work budget)")
        self.tick()

    def spend(self, n: int, what: str = "a value") -> None:
        self.need(n, what)
        self.work -= n

    def iterate(self) -> None:
        self.iterations -= 1
        if self.iterations < 0:
            raise TemplateLimitExceeded(
                f"loops ran more than {self.limits.max_iterations} iterations")
        self.tick()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise TemplateLimitExceeded(
                f"calls nested deeper than {self.limits.max_depth} (macro recursion)")
        self.tick()


_local = threading.local()


@contextmanager
def bounded(limits: Limits | None = None) -> Iterator[Budget]:
    """Make the guards of this thread charge a fresh budget for the duration."""
    budget = Budget(limits or _default)
    previous = getattr(_local, "budget", None)
    _local.budget = budget
    try:
        yield budget
    finally:
        _local.budget = previous


def current() -> Budget:
    budget: Budget | None = getattr(_local, "budget", None)
    if budget is None:  # a guard outside ``bounded``: a bug, but never run unbounded
        budget = _local.budget = Budget(_default)
    return budget


# --- sizes ---------------------------------------------------------------------------------


def cost(value: Any) -> int:
    """A cheap estimate of the bytes ``value`` holds (strings by length, containers by slot
    plus their string members; one level deep, which is what templates can build)."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 8
    if isinstance(value, list | tuple | set | frozenset | dict):
        members = value.values() if isinstance(value, dict) else value
        total = 8 * len(value)
        for member in members:
            if isinstance(member, str | bytes):
                total += len(member)
        return total
    return 0


def _sized(value: Any) -> int | None:
    """How many units repeating ``value`` copies (chars, bytes or slots), or None."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, list | tuple):
        return 8 * len(value) + sum(len(v) for v in value if isinstance(v, str | bytes))
    return None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitExceeded(f"a number would have {bits} bits, over {MAX_INT_BITS}")


def check_binop(op: str, left: Any, right: Any) -> None:
    """Before ``left <op> right``: refuse results over the bounds."""
    b = current()
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            unit = _sized(seq)
            if unit is not None and _int(times):
                b.need(unit * max(times, 0), "a repeated value")
                return
        if _int(left) and _int(right):
            _check_int_bits(left.bit_length() + right.bit_length())
    elif op == "+":
        lsize, rsize = _sized(left), _sized(right)
        if lsize is not None and rsize is not None:
            b.need(lsize + rsize, "a concatenation")
        elif _int(left) and _int(right):
            _check_int_bits(max(left.bit_length(), right.bit_length()) + 1)
    elif op == "**":
        if _int(left) and _int(right) and right > 0:
            _check_int_bits(max(left.bit_length(), 1) * right)
    elif op == "%" and isinstance(left, str | bytes):
        args = right if isinstance(right, tuple) else (right,)
        check_printf(left, args)
    b.tick()


_PRINTF_SPEC = re.compile(r"%[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_NUMBERS = re.compile(r"\d+")
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")


def check_printf(fmt: str | bytes, args: Iterable[Any]) -> None:
    """``fmt % args`` (and the ``format`` filter): widths and precisions are bounded."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    arg_list = list(args) if not isinstance(args, dict) else list(args.values())
    total = len(text) + sum(len(str(a)) if isinstance(a, str) else 32 for a in arg_list)
    for width, precision in _PRINTF_SPEC.findall(text):
        for part in (width, precision):
            if part == "*":
                raise TemplateLimitExceeded("a '*' width in a format string is not allowed")
            if part:
                total += int(part)
    current().need(total, "a formatted value")


def check_format(fmt: str, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    """``str.format``: numbers in the format string are widths or precisions; an argument can
    be one too when a field nests another (``{:>{w}}``). Counted conservatively."""
    nested = _NESTED_FIELD.search(fmt) is not None
    total = len(fmt)
    for value in [*args, *kwargs.values()]:
        if isinstance(value, str):
            total += len(value)
        else:
            total += 32 + (max(value, 0) if nested and _int(value) else 0)
    for number in _NUMBERS.findall(fmt):
        total += int(number) if len(number) < 12 else 1 << 62
    current().need(total, "a formatted value")


def check_join(sep: str, parts: list[Any]) -> None:
    total = len(sep) * max(len(parts) - 1, 0)
    for part in parts:
        total += len(part) if isinstance(part, str) else 32
    current().need(total, "a joined value")


def check_replace(text: str, old: str, new: str, count: int = -1) -> None:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    current().need(len(text) + hits * max(len(new) - len(old), 0), "a replaced value")


def check_width(text: Any, width: Any) -> None:
    if _int(width):
        current().need(max(len(str(text)), width), "a padded value")


def check_str_method(obj: str | bytes, name: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Before a width- or count-taking method of a string; returns the (possibly
    materialised) arguments to call it with."""
    b = current()
    if name in ("center", "ljust", "rjust", "zfill") and args:
        check_width(obj, args[0])
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if _int(size):
            tabs = obj.count("\t") if isinstance(obj, str) else obj.count(b"\t")
            b.need(len(obj) + tabs * max(size, 0), "a value with tabs expanded")
    elif name == "replace" and len(args) >= 2 and isinstance(obj, str):
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        check_replace(obj, str(args[0]), str(args[1]), count if _int(count) else -1)
    elif name in ("format", "format_map") and isinstance(obj, str):
        # Jinja2 before 3.1.5 routes str.format through ``call`` (later ones wrap it at
        # attribute access, see ``template.BoundedSandbox.wrap_str_format``)
        mapping = args[0] if name == "format_map" and args and isinstance(args[0], dict) else {}
        check_format(obj, () if name == "format_map" else args, {**kwargs, **mapping})
    elif name == "join" and args:
        parts = list(iterate(args[0]))
        check_join(str(obj), parts)
        return (parts, *args[1:])
    return args


def iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    """What every ``for`` loop of a template iterates over (and ``join`` materialises)."""
    b = current()
    for item in iterable:
        b.iterate()
        yield item


def joined(parts: Iterable[Any]) -> str:
    """``"".join`` for captured blocks (``{% set %}`` blocks, macro bodies, ``caller()``):
    their buffers hold references, so the sum is known before the join allocates."""
    items = parts if isinstance(parts, list) else list(parts)
    check_join("", [p if isinstance(p, str) else str(p) for p in items])
    return "".join(items)


def concat(*parts: Any) -> str:
    """The ``~`` operator, bounded before it allocates."""
    texts = [p if isinstance(p, str) else str(p) for p in parts]
    current().spend(sum(len(t) for t in texts), "a concatenation")
    return "".join(texts)


# --- filters -------------------------------------------------------------------------------


def _pre_center(value: Any, width: Any = 80, *_: Any, **__: Any) -> None:
    check_width(value, width)


def _pre_indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(value)
    unit = width if _int(width) else len(str(width))
    current().need(len(text) + (text.count("\n") + 1) * max(unit, 0), "an indented value")


def _pre_wordwrap(value: Any, width: Any = 79, break_long_words: Any = True,
                  wrapstring: Any = None, *_: Any, **kw: Any) -> None:
    text = str(value)
    wrap = kw.get("wrapstring", wrapstring)
    lines = len(text) // max(width if _int(width) else 1, 1) + text.count("\n") + 1
    current().need(len(text) + lines * len(str(wrap or "\n")), "a wrapped value")


def _pre_format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_printf(str(value), args or kwargs)


def _pre_replace(value: Any, old: Any = "", new: Any = "", count: Any = None,
                 *_: Any, **__: Any) -> None:
    check_replace(str(value), str(old), str(new), count if _int(count) else -1)


def _pre_slice(value: Any, slices: Any = 1, *_: Any, **__: Any) -> None:
    if _int(slices) and slices > current().limits.max_iterations:
        raise TemplateLimitExceeded(f"slice into more than "
                                    f"{current().limits.max_iterations} parts")


_PRECHECKS: dict[str, Callable[..., None]] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "format": _pre_format,
    "replace": _pre_replace,
    "slice": _pre_slice,
}


def guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its known expansion checked before the call and its result charged after.
    ``join`` materialises its input first (a generator can be iterated once only)."""
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0
    pre = _PRECHECKS.get(name)

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        b = current()
        b.tick()
        if name == "join" and len(args) > skip:
            items = list(iterate(args[skip]))
            sep = args[skip + 1] if len(args) > skip + 1 else kwargs.get("d", "")
            check_join(str(sep), items)
            args = (*args[:skip], items, *args[skip + 1:])
        elif pre is not None and len(args) > skip:
            pre(*args[skip:], **kwargs)
        result = fn(*args, **kwargs)
        b.spend(cost(result), f"the result of filter {name!r}")
        return result

    return guarded
