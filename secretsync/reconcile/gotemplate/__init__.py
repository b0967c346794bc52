"""Go ``text/template`` with sprig and ESO's functions: the External Secrets Operator's template
engine v2 (``spec.target.template.engineVersion: v2``), in Python.

No maintained Python library implements Go's templates, and ESO manifests are full of them
(``{{ .password | b64dec }}``, ``{{- range }}``, ``pkcs12key``). Values are bytes end to end,
as Go strings are; a render is bounded by ``template_limits.Limits`` like the Jinja2 one; any
failure is an ``InvalidTemplate`` whose one-line message names the problem and never a value.
Checked against ESO's own engine by tests/integration/test_gotemplate_vs_go.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from secretsync.errors import InvalidTemplate
from secretsync.reconcile import template_limits as limits
from secretsync.reconcile.gotemplate.builtins import BUILTIN_NAMES, BUILTINS
from secretsync.reconcile.gotemplate.eso import ESO
from secretsync.reconcile.gotemplate.execute import Func, State, Writer
from secretsync.reconcile.gotemplate.parse import Tree, parse
from secretsync.reconcile.gotemplate.sprig import SPRIG
from secretsync.reconcile.gotemplate.values import StrMap
from secretsync.reconcile.template_limits import Limits, TemplateLimitExceeded

FUNCS: dict[str, Func] = {**SPRIG, **ESO, **BUILTINS}
NAMES = frozenset(FUNCS) | BUILTIN_NAMES

__all__ = ["FUNCS", "compile_template", "render", "render_data"]


def compile_template(source: str | bytes) -> Tree:
    """Parse ``source`` (raises ``InvalidTemplate`` on a syntax error)."""
    src = source.encode() if isinstance(source, str) else source
    try:
        return parse(src, NAMES)
    except RecursionError:
        raise TemplateLimitExceeded("the template nests too deeply to parse") from None


def render(source: str | bytes | Tree, data: Mapping[str, bytes],
           limits_: Limits | None = None) -> bytes:
    """Render one template with ``data`` as its dot (``map[string]string``, as ESO passes it);
    the output is bytes. Bounded by ``limits_`` (the defaults if None)."""
    with limits.bounded(limits_ or limits.default_limits()):
        return _render(source, data, Writer())


def render_data(templates: Mapping[str, str], values: Mapping[str, bytes],
                bounds: Limits | None = None) -> dict[str, bytes]:
    """``target.template.data`` the way ESO renders it (scope Values, one template per key,
    the fetched values as the dot), all keys together within one set of ``bounds``.

    Raises ``InvalidTemplate`` naming the key and the problem (``TemplateLimitExceeded`` for a
    bound), never a value."""
    lim = bounds or limits.default_limits()
    out: dict[str, bytes] = {}
    writer = Writer()  # one writer: the output bound is for the whole Secret
    with limits.bounded(lim):
        for key, source in templates.items():
            try:
                if len(source) > lim.max_bytes:
                    raise TemplateLimitExceeded(
                        f"the template is longer than {lim.max_bytes} bytes")
                start = len(writer.parts)
                _render(source, values, writer)
                out[key] = b"".join(writer.parts[start:])
            except TemplateLimitExceeded as exc:
                raise TemplateLimitExceeded(f"template for key {key!r}: {exc.message}") from None
            except InvalidTemplate as exc:
                raise InvalidTemplate(f"template for key {key!r}: {exc.message}") from None
    return out


def _render(source: str | bytes | Tree, data: Mapping[str, bytes], out: Writer) -> bytes:
    try:
        tree = source if isinstance(source, Tree) else compile_template(source)
        dot = StrMap({k.encode(): bytes(v) for k, v in data.items()})
        state = State(tree, FUNCS, out)
        state.push(b"$", dot)
        state.walk(dot, tree.root)
    except RecursionError:
        raise TemplateLimitExceeded("the template nests too deeply") from None
    except (InvalidTemplate, TemplateLimitExceeded):
        raise
    except Exception as exc:  # a bug of ours: still one line, and no value in it
        raise InvalidTemplate(f"{type(exc).__name__} while rendering (engine error)") from None
    return b"".join(out.parts)
