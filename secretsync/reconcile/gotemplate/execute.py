"""Running a parsed Go template: Go's evaluation rules, bounded by ``template_limits``.

What Go does, and so we do: a missing map key is an error (ESO sets ``missingkey=error``); a
function's arguments are checked against its parameter types (a literal must be of the right
kind, a computed value assignable); ``and``/``or`` stop at the first deciding argument and
return it; a pipeline's nil result prints as ``<no value>``; ``range`` walks maps in key
order; variables declared inside a control structure end at its ``{{end}}``.

Bounds: every write counts against the output limit before it happens, every loop iteration
and every ``{{template}}`` call against the iteration and depth budgets, and the deadline is
checked at each of those points. Functions that can build large values check their size first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from secretsync.reconcile import template_limits as limits
from secretsync.reconcile.gotemplate import parse as p
from secretsync.reconcile.gotemplate.values import (
    MISSING,
    ExecError,
    GoMap,
    Int64,
    kind,
    sprint_value,
    truth,
    type_name,
)
from secretsync.reconcile.template_limits import TemplateLimitExceeded


@dataclass(frozen=True)
class Func:
    """A template function: ``params`` are Go parameter kinds, one letter each: a (any),
    s (string), i (int), f (float64), b (bool), m (map[string]interface{}), l (slice);
    ``variadic`` the kind of the trailing ``...`` parameter, if any."""

    fn: Callable[..., Any]
    params: str
    variadic: str | None = None


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        b = limits.current()
        self.size += len(data)
        if self.size > b.limits.max_bytes:
            raise TemplateLimitExceeded(
                f"the output would be over the limit of {b.limits.max_bytes} bytes")
        b.tick()
        self.parts.append(data)


class State:
    def __init__(self, tree: p.Tree, funcs: dict[str, Func], out: Writer) -> None:
        self.tree = tree
        self.funcs = funcs
        self.out = out
        self.vars: list[list[Any]] = []

    # --- variables --------------------------------------------------------------------------
    def push(self, name: bytes, value: Any) -> None:
        self.vars.append([name, value])

    def set_var(self, name: bytes, value: Any) -> None:
        for slot in reversed(self.vars):
            if slot[0] == name:
                slot[1] = value
                return
        raise ExecError(f"undefined variable: {name.decode('latin-1')}")

    def var(self, name: bytes) -> Any:
        for slot in reversed(self.vars):
            if slot[0] == name:
                return slot[1]
        raise ExecError(f"undefined variable: {name.decode('latin-1')}")

    # --- walking ----------------------------------------------------------------------------
    def walk(self, dot: Any, nodes: list[Any]) -> None:
        for node in nodes:
            if isinstance(node, p.Text):
                self.out.write(node.text)
            elif isinstance(node, p.Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.write(b"<no value>" if value is MISSING or value is None
                                   else sprint_value(value))
            elif isinstance(node, p.Control):
                mark = len(self.vars)
                try:
                    if node.kind == "range":
                        self.walk_range(dot, node)
                    else:
                        value = self.pipeline(dot, node.pipe)
                        if truth(value):
                            self.walk(value if node.kind == "with" else dot, node.body)
                        elif node.orelse is not None:
                            self.walk(dot, node.orelse)
                finally:
                    del self.vars[mark:]
            elif isinstance(node, p.Call):
                self.call_template(dot, node)
            elif isinstance(node, p.Jump):
                raise _Break() if node.kind == "break" else _Continue()

    def call_template(self, dot: Any, node: p.Call) -> None:
        body = self.tree.defines.get(node.name)
        if body is None:
            raise ExecError(f"no such template {node.name.decode('latin-1')!r}")
        new_dot = MISSING if node.pipe is None else self.pipeline(dot, node.pipe)
        b = limits.current()
        b.enter()
        saved, self.vars = self.vars, [[b"$", new_dot]]
        try:
            self.walk(new_dot, body)
        finally:
            self.vars = saved
            b.depth -= 1

    def walk_range(self, dot: Any, node: p.Control) -> None:
        value = self.pipeline(dot, node.pipe)
        items: Iterable[tuple[Any, Any]]
        if value is MISSING or value is None:
            items = ()
        elif isinstance(value, list):
            items = enumerate(value)  # lazily: no copy of a long list
        elif isinstance(value, dict):
            items = ((k, value[k]) for k in sorted(value))
        elif kind(value) == "int":
            if len(node.pipe.decl) > 1:
                raise ExecError(f"can't use {value} to iterate over more than one variable")
            items = ((i, i) for i in range(value))
        else:
            raise ExecError(f"range can't iterate over a {type_name(value)}")
        if not (len(value) if isinstance(value, list | dict) else
                value > 0 if kind(value) == "int" else False):
            if node.orelse is not None:
                self.walk(dot, node.orelse)
            return
        b = limits.current()
        decl = node.pipe.decl
        for key, elem in items:
            b.iterate()
            if len(decl) == 1:
                self.set_var(decl[0], elem)
            elif len(decl) == 2:
                self.set_var(decl[0], key)
                self.set_var(decl[1], elem)
            mark = len(self.vars)
            try:
                self.walk(elem, node.body)
            except _Break:
                break
            except _Continue:
                continue
            finally:
                del self.vars[mark:]

    # --- pipelines --------------------------------------------------------------------------
    def pipeline(self, dot: Any, pipe: p.Pipe) -> Any:
        value: Any = MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if value is None:
            value = MISSING
        for name in pipe.decl:
            if pipe.assign:
                self.set_var(name, value)
            else:
                self.push(name, value)
        return value

    def command(self, dot: Any, cmd: p.Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, p.Field):
            return self.field_chain(dot, dot, first.names, cmd.args, final)
        if isinstance(first, p.Chain):
            receiver = self.arg(dot, first.node, "a")
            return self.field_chain(dot, receiver, first.names, cmd.args, final)
        if isinstance(first, p.Ident):
            return self.call(dot, first.name, cmd.args[1:], final)
        if isinstance(first, p.Var):
            if not first.names:
                self.not_a_function(cmd.args, final)
                return self.var(first.name)
            return self.field_chain(dot, self.var(first.name), first.names, cmd.args, final)
        self.not_a_function(cmd.args, final)
        if isinstance(first, p.Pipe):
            return self.pipeline(dot, first)
        if isinstance(first, p.Dot):
            return dot
        assert isinstance(first, p.Literal)
        return _literal(first)

    @staticmethod
    def not_a_function(args: list[Any], final: Any) -> None:
        if len(args) > 1 or final is not MISSING:
            raise ExecError("can't give argument to non-function")

    def field_chain(self, dot: Any, receiver: Any, names: list[bytes], args: list[Any],
                    final: Any) -> Any:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            receiver = self.field(name, receiver,
                                  last and (len(args) > 1 or final is not MISSING))
        return receiver

    @staticmethod
    def field(name: bytes, receiver: Any, has_args: bool) -> Any:
        shown = name.decode("latin-1")
        if receiver is None or receiver is MISSING:
            raise ExecError(f"nil pointer evaluating interface {{}}.{shown}")
        if isinstance(receiver, dict):
            if has_args:
                raise ExecError(f"{shown} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            raise ExecError(f'map has no entry for key "{shown}"')
        raise ExecError(f"can't evaluate field {shown} in type {type_name(receiver)}")

    # --- calls ------------------------------------------------------------------------------
    def call(self, dot: Any, name: str, nodes: list[Any], final: Any) -> Any:
        if name in ("and", "or"):
            return self.and_or(dot, name, nodes, final)
        func = self.funcs[name]
        n_args = len(nodes) + (final is not MISSING)
        n_in = len(func.params)
        if func.variadic is None and n_args != n_in:
            raise ExecError(f"wrong number of args for {name}: want {n_in} got {n_args}")
        if func.variadic is not None and n_args < n_in:
            raise ExecError(f"wrong number of args for {name}: want at least {n_in} got {n_args}")
        kinds = func.params + (func.variadic or "") * (n_args - n_in)
        args = [self.arg(dot, node, k) for node, k in zip(nodes, kinds, strict=False)]
        if final is not MISSING:
            args.append(validate(final, kinds[-1]))
        try:
            result = func.fn(*args)
        except (ExecError, TemplateLimitExceeded):
            raise
        except Exception as exc:  # Go turns a panic or an error result into this
            raise ExecError(f"error calling {name}: {_reason(exc)}") from None
        limits.current().spend(limits.cost(result), f"the result of {name}")
        return result

    def and_or(self, dot: Any, name: str, nodes: list[Any], final: Any) -> Any:
        sources: list[Any] = list(nodes) + ([] if final is MISSING else [_Evaluated(final)])
        if not sources:
            raise ExecError(f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = MISSING
        for src in sources:
            value = src.value if isinstance(src, _Evaluated) else self.arg(dot, src, "a")
            if truth(value) == (name == "or"):
                break
        return value

    def arg(self, dot: Any, node: Any, k: str) -> Any:
        """One argument for a parameter of kind ``k``, Go's way (evalArg)."""
        if isinstance(node, p.Literal):
            return _typed_literal(node, k)
        if isinstance(node, p.Dot):
            value = dot
        elif isinstance(node, p.Field):
            value = self.field_chain(dot, dot, node.names, [node], MISSING)
        elif isinstance(node, p.Var):
            value = self.var(node.name)
            if node.names:
                value = self.field_chain(dot, value, node.names, [node], MISSING)
        elif isinstance(node, p.Pipe):
            value = self.pipeline(dot, node)
        elif isinstance(node, p.Chain):
            receiver = self.arg(dot, node.node, "a")
            value = self.field_chain(dot, receiver, node.names, [node], MISSING)
        elif isinstance(node, p.Ident):
            value = self.call(dot, node.name, [], MISSING)
        else:  # pragma: no cover - the parser makes no other nodes
            raise ExecError("can't handle argument")
        return validate(value, k)


@dataclass
class _Evaluated:
    value: Any


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


_KIND_NAMES = {"s": "string", "i": "int", "f": "float64", "b": "bool",
               "m": "map[string]interface {}", "l": "[]interface {}"}


def validate(value: Any, k: str) -> Any:
    """Go's validateType: is ``value`` assignable to a parameter of kind ``k``?"""
    if k == "a":
        return None if value is MISSING else value
    if value is None or value is MISSING:
        raise ExecError(f"invalid value; expected {_KIND_NAMES[k]}")
    ok = {"s": isinstance(value, bytes),
          "i": isinstance(value, int) and not isinstance(value, bool | Int64),
          "f": isinstance(value, float),
          "b": isinstance(value, bool),
          "m": type(value) is GoMap,
          "l": isinstance(value, list)}[k]
    if not ok:
        raise ExecError(f"wrong type for value; expected {_KIND_NAMES[k]}; "
                        f"got {type_name(value)}")
    return value


def _literal(node: p.Literal) -> Any:
    if node.kind == "int" and not (-(1 << 63) <= node.value < 1 << 63):
        raise ExecError("number overflows int")
    return node.value


def _typed_literal(node: p.Literal, k: str) -> Any:
    if k == "a":
        return _literal(node)
    if node.kind == "nil":
        raise ExecError(f"cannot assign nil to {_KIND_NAMES[k]}")
    if k == "s" and node.kind == "string":
        return node.value
    if k == "b" and node.kind == "bool":
        return node.value
    if k == "i" and node.kind in ("int", "float") and node.is_int:
        value = int(node.value)
        if not -(1 << 63) <= value < 1 << 63:
            raise ExecError("number overflows int")
        return value
    if k == "f" and node.kind in ("int", "float") and node.is_float:
        return float(node.value)
    expected = {"s": "string", "b": "bool", "i": "integer", "f": "float"}.get(k)
    if expected is None:
        raise ExecError(f"can't handle a literal for an argument of type {_KIND_NAMES[k]}")
    raise ExecError(f"expected {expected}; found a {node.kind} literal")
