"""The parser of Go's text/template: tokens to a tree, with Go's parse-time checks.

Go rejects some templates before running them, and so do we: an unknown function, an
undeclared ``$variable``, ``{{break}}`` outside ``{{range}}``, a missing ``{{end}}``, a literal
in a later pipeline stage, ``nil`` as a command, ``{{define}}`` inside an action. The tree has
Go's shapes: lists of text and actions; a pipeline is commands joined by ``|`` (each the
previous one's result appended as its last argument) with optional ``$x :=`` / ``$x =``
declarations; ``if``/``with``/``range`` carry an else list (``else if`` nests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from secretsync.reconcile.gotemplate.lex import Tok, _err, lex, number, unquote


@dataclass
class Text:
    text: bytes


@dataclass
class Field:  # .a.b
    names: list[bytes]


@dataclass
class Var:  # $x.a.b
    name: bytes
    names: list[bytes]


@dataclass
class Chain:  # (pipe).a.b
    node: Any
    names: list[bytes]


@dataclass
class Ident:  # a function name
    name: str


@dataclass
class Literal:  # bool, string, number, nil; kind: bool string int float nil
    kind: str
    value: Any
    is_int: bool = False
    is_float: bool = False


@dataclass
class Dot:
    pass


@dataclass
class Command:
    args: list[Any]


@dataclass
class Pipe:
    decl: list[bytes]
    assign: bool
    cmds: list[Command]


@dataclass
class Action:
    pipe: Pipe


@dataclass
class Control:  # if / with / range
    kind: str
    pipe: Pipe
    body: list[Any]
    orelse: list[Any] | None


@dataclass
class Call:  # {{template "name" pipe}}
    name: bytes
    pipe: Pipe | None


@dataclass
class Jump:  # break / continue
    kind: str


@dataclass
class Tree:
    root: list[Any]
    defines: dict[bytes, list[Any]] = field(default_factory=dict)


class _End(Exception):
    pass


def _is_empty(nodes: list[Any]) -> bool:
    return all(isinstance(n, Text) and not n.text.strip(b" \t\r\n") for n in nodes)


class Parser:
    def __init__(self, src: bytes, funcs: frozenset[str]) -> None:
        self.toks = lex(src)
        self.i = 0
        self.funcs = funcs
        self.vars: list[bytes] = [b"$"]
        self.range_depth = 0
        self.defines: dict[bytes, list[Any]] = {}

    # --- tokens -----------------------------------------------------------------------------
    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next_ns(self) -> Tok:
        tok = self.next()
        while tok.kind == "space":
            tok = self.next()
        return tok

    def peek_ns(self) -> Tok:
        j = self.i
        while self.toks[j].kind == "space":
            j += 1
        return self.toks[j]

    def expect(self, kind: str, context: str) -> Tok:
        tok = self.next_ns()
        if tok.kind != kind:
            raise _err(tok.line, f"unexpected {_show(tok)} in {context}")
        return tok

    # --- lists ------------------------------------------------------------------------------
    def parse(self) -> Tree:
        root, stop = self.item_list(top=True)
        if stop is not None:
            raise _err(stop[1].line, f"unexpected {{{{{stop[0]}}}}}")
        return Tree(root, self.defines)

    def item_list(self, top: bool = False) -> tuple[list[Any], tuple[str, Tok] | None]:
        """Nodes up to eof (top) or to an ``{{end}}``/``{{else}}``, which is returned."""
        nodes: list[Any] = []
        while True:
            tok = self.next()
            if tok.kind == "eof":
                if not top:
                    raise _err(tok.line, "unexpected EOF")
                return nodes, None
            if tok.kind == "text":
                nodes.append(Text(tok.val))
                continue
            assert tok.kind == "left"
            word = self.peek_ns()
            if word.kind == "keyword" and word.val in (b"end", b"else"):
                self.next_ns()
                return nodes, (word.val.decode(), word)
            if word.kind == "keyword" and word.val == b"define":
                if not top:
                    raise _err(word.line, "unexpected {{define}}")
                self.next_ns()
                self.parse_define()
                continue
            node = self.action()
            if node is not None:
                nodes.append(node)

    def parse_define(self) -> None:
        name = self.template_name("define clause")
        self.expect("right", "define clause")
        saved, self.vars = self.vars, [b"$"]
        body, stop = self.item_list()
        self.vars = saved
        if stop is None or stop[0] != "end":
            raise _err(self.peek().line, "unexpected {{else}} in define clause")
        self.expect("right", "end")
        self.add_define(name, body)

    def add_define(self, name: bytes, body: list[Any]) -> None:
        if name in self.defines and not _is_empty(self.defines[name]) and not _is_empty(body):
            raise _err(self.peek().line, f"template: multiple definition of template {name!r}")
        if name not in self.defines or not _is_empty(body):
            self.defines[name] = body

    def template_name(self, context: str) -> bytes:
        tok = self.next_ns()
        if tok.kind not in ("string", "raw"):
            raise _err(tok.line, f"unexpected {_show(tok)} in {context}")
        return unquote(tok)

    # --- actions ----------------------------------------------------------------------------
    def action(self) -> Any:
        tok = self.peek_ns()
        if tok.kind == "keyword":
            word = tok.val.decode()
            if word in ("if", "with", "range"):
                self.next_ns()
                return self.control(word)
            if word in ("break", "continue"):
                self.next_ns()
                if self.range_depth == 0:
                    raise _err(tok.line, f"{{{{{word}}}}} outside {{{{range}}}}")
                self.expect("right", word)
                return Jump(word)
            if word == "template":
                self.next_ns()
                name = self.template_name("template clause")
                pipe = None
                if self.peek_ns().kind != "right":
                    pipe = self.pipeline("template clause", "right")
                else:
                    self.next_ns()
                return Call(name, pipe)
            if word == "block":
                self.next_ns()
                name = self.template_name("block clause")
                pipe = self.pipeline("block clause", "right")
                saved, self.vars = self.vars, [b"$"]
                body, stop = self.item_list()
                self.vars = saved
                if stop is None or stop[0] != "end":
                    raise _err(tok.line, "unexpected {{else}} in block clause")
                self.expect("right", "end")
                self.add_define(name, body)
                return Call(name, pipe)
        return Action(self.pipeline("command", "right"))

    def control(self, kind: str) -> Control:
        mark = len(self.vars)
        pipe = self.pipeline(kind, "right")
        if kind == "range":
            self.range_depth += 1
        body, stop = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        orelse: list[Any] | None = None
        assert stop is not None
        if stop[0] == "else":
            nxt = self.peek_ns()
            if kind in ("if", "with") and nxt.kind == "keyword" and nxt.val == kind.encode():
                self.next_ns()  # {{else if ...}}: a nested control sharing our {{end}}
                orelse = [self.control(kind)]
                del self.vars[mark:]
                return Control(kind, pipe, body, orelse)
            self.expect("right", "else")
            orelse, stop = self.item_list()
            assert stop is not None
            if stop[0] != "end":
                raise _err(stop[1].line, "expected end; found {{else}}")
        self.expect("right", "end")
        del self.vars[mark:]
        return Control(kind, pipe, body, orelse)

    # --- pipelines --------------------------------------------------------------------------
    def pipeline(self, context: str, end: str) -> Pipe:
        decl: list[bytes] = []
        assign = False
        tok = self.peek_ns()
        if tok.kind == "var":
            save = self.i
            self.next_ns()
            nxt = self.peek_ns()
            if nxt.kind in (":=", "="):
                self.next_ns()
                decl.append(tok.val)
                assign = nxt.kind == "="
            elif nxt.kind == "," and context == "range":
                self.next_ns()
                second = self.next_ns()
                if second.kind != "var":
                    raise _err(second.line, "range can only initialize variables")
                op = self.next_ns()
                if op.kind not in (":=", "="):
                    raise _err(op.line, f"unexpected {_show(op)} in range")
                decl += [tok.val, second.val]
                assign = op.kind == "="
            else:
                self.i = save
            if decl and not assign:
                self.vars.extend(decl)
            elif decl:
                for name in decl:
                    self.use_var(name, tok)
        cmds: list[Command] = []
        while True:
            tok = self.peek_ns()
            if tok.kind == end:
                self.next_ns()
                break
            if tok.kind in ("right", ")", "eof"):
                raise _err(tok.line, f"unexpected {_show(tok)} in {context}")
            cmds.append(self.command(end))
        if not cmds:
            raise _err(tok.line, f"missing value for {context}")
        for n, cmd in enumerate(cmds[1:], 2):
            if isinstance(cmd.args[0], Literal | Dot):
                raise _err(tok.line, f"non executable command in pipeline stage {n}")
        return Pipe(decl, assign, cmds)

    def command(self, end: str) -> Command:
        args: list[Any] = []
        while True:
            args.append(self.operand())
            tok = self.peek()
            if tok.kind == "space":
                self.next()
                tok = self.peek()
                if tok.kind in (end, "|", "right", ")"):
                    pass
                else:
                    continue
            if tok.kind == "|":
                self.next()
                break
            if tok.kind in (end, "right", ")"):
                break
            raise _err(tok.line, f"unexpected {_show(tok)} in operand")
        if isinstance(args[0], Literal) and args[0].kind == "nil":
            raise _err(self.peek().line, "nil is not a command")
        return Command(args)

    def operand(self) -> Any:
        node = self.term()
        if self.peek().kind == "field":
            names: list[bytes] = []
            while self.peek().kind == "field":
                names.append(self.next().val)
            if isinstance(node, Field):
                return Field(node.names + names)
            if isinstance(node, Var):
                return Var(node.name, node.names + names)
            if isinstance(node, Literal | Dot):
                raise _err(self.peek().line, "unexpected . after term")
            return Chain(node, names)
        return node

    def term(self) -> Any:
        tok = self.next_ns()
        k = tok.kind
        if k == "ident":
            name = tok.val.decode("latin-1")
            if name not in self.funcs:
                raise _err(tok.line, f"function {name!r} not defined")
            return Ident(name)
        if k == "dot":
            return Dot()
        if k == "field":
            return Field([tok.val])
        if k == "var":
            self.use_var(tok.val, tok)
            return Var(tok.val, [])
        if k == "keyword" and tok.val in (b"true", b"false"):
            return Literal("bool", tok.val == b"true")
        if k == "keyword" and tok.val == b"nil":
            return Literal("nil", None)
        if k in ("string", "raw"):
            return Literal("string", unquote(tok))
        if k in ("number", "char"):
            return number(tok, Literal)
        if k == "(":
            pipe = self.pipeline("parenthesized pipeline", ")")
            return pipe
        raise _err(tok.line, f"unexpected {_show(tok)} in operand")

    def use_var(self, name: bytes, tok: Tok) -> None:
        if name not in self.vars:
            raise _err(tok.line, f"undefined variable {name.decode('latin-1')!r}")


def _show(tok: Tok) -> str:
    if tok.kind in ("right", "left"):
        return {"right": "right delimiter", "left": "left delimiter"}[tok.kind]
    if tok.kind == "eof":
        return "EOF"
    return f"{tok.kind} {tok.val[:20].decode('latin-1')!r}"


def parse(src: bytes, funcs: frozenset[str]) -> Tree:
    return Parser(src, funcs).parse()


