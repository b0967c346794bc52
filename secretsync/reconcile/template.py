"""Sandboxed Jinja2 rendering of ``template.data`` for SealedSecrets and ExternalSecrets.

Templates come from Git (i.e. from anyone who can open a pull request), so they run in
Jinja2's sandbox with ``StrictUndefined``: an unknown name is an error, not an empty string.
Values are exposed as ``str`` (UTF-8, undecodable bytes replaced) so ordinary string
filters work; error messages name the template key and the problem, never a value.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from secretsync.errors import InvalidTemplate
from secretsync.reconcile import template_limits as limits

_FILTERS: dict[str, Callable[..., Any]] = {}


def template_filter(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an extra filter for every template environment."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _FILTERS[name] = fn
        return fn

    return deco


@template_filter("b64enc")
def _b64enc(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


@template_filter("b64dec")
def _b64dec(value: str) -> str:
    return base64.b64decode(value).decode("utf-8", "replace")


@template_filter("fromJson")
def _from_json(value: str) -> Any:
    return json.loads(value)


@template_filter("toJson")
def _to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# --- more filters (ExternalSecret templates; names follow ESO's where they exist) ----------
# Template values are text, so binary inputs (PKCS#12) are taken as base64 and binary outputs
# are produced as base64.


@template_filter("b64urlenc")
def _b64urlenc(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.urlsafe_b64encode(raw).decode()


@template_filter("b64urldec")
def _b64urldec(value: str) -> str:
    text = value.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8", "replace")


@template_filter("fromYaml")
def _from_yaml(value: str) -> Any:
    """YAML without anchors and aliases: an alias is a reference when loaded but a copy when
    printed again (``toJson``), so a few hundred bytes could expand to gigabytes."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(value, Loader=loader)):
        raise ValueError("YAML aliases are not allowed in templates")
    return yaml.safe_load(value)


@template_filter("toYaml")
def _to_yaml(value: Any) -> str:
    import yaml

    return str(yaml.safe_dump(value, default_flow_style=False, sort_keys=True))


_PEM_BODY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


@template_filter("filterPEM")
def _filter_pem(value: str, pem_type: str = "CERTIFICATE") -> str:
    """Only the PEM blocks of ``pem_type`` (e.g. CERTIFICATE, PRIVATE KEY), in order.

    One pass over the lines (a regular expression with a back-reference is quadratic on a
    value full of BEGIN lines, and a value is whatever the backend holds)."""
    blocks: list[str] = []
    block: list[str] | None = None
    kind = ""
    for raw in value.splitlines():
        line = raw.strip()
        if line.startswith("-----BEGIN ") and line.endswith("-----"):
            block, kind = [line], line[11:-5]
        elif block is not None and line == f"-----END {kind}-----":
            if kind == pem_type:
                blocks.append("\n".join([*block, line]))
            block = None
        elif block is not None and not set(line) <= _PEM_BODY:
            block = None
        elif block is not None:
            block.append(line)
    if not blocks:
        raise ValueError(f"no {pem_type} PEM block")
    return "\n".join(blocks) + "\n"


def _p12_bytes(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return raw


def _p12_load(value: str | bytes, password: str) -> Any:
    from cryptography.hazmat.primitives.serialization import pkcs12

    return pkcs12.load_pkcs12(_p12_bytes(value), password.encode() if password else None)


@template_filter("pkcs12key")
def _pkcs12_key(value: str | bytes, password: str = "") -> str:
    """The private key of a (base64) PKCS#12 bundle as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    p12 = _p12_load(value, password)
    if p12.key is None:
        raise ValueError("PKCS#12 bundle has no private key")
    return str(p12.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode())


@template_filter("pkcs12cert")
def _pkcs12_cert(value: str | bytes, password: str = "") -> str:
    """The certificate chain of a (base64) PKCS#12 bundle as PEM, leaf first."""
    from cryptography.hazmat.primitives import serialization

    p12 = _p12_load(value, password)
    certs = ([p12.cert.certificate] if p12.cert else []) + [
        c.certificate for c in p12.additional_certs]
    if not certs:
        raise ValueError("PKCS#12 bundle has no certificate")
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


# ESO spells the password-taking variants separately.
template_filter("pkcs12keyPass")(_pkcs12_key)
template_filter("pkcs12certPass")(_pkcs12_cert)


@template_filter("pemToPkcs12")
def _pem_to_pkcs12(cert_pem: str, key_pem: str, password: str = "") -> str:
    """A base64 PKCS#12 bundle from PEM certificate(s) (leaf first) and a PEM private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    certs = x509.load_pem_x509_certificates(cert_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    enc: Any = (serialization.BestAvailableEncryption(password.encode()) if password
                else serialization.NoEncryption())
    blob = pkcs12.serialize_key_and_certificates(None, key, certs[0],  # type: ignore[arg-type]
                                                 certs[1:] or None, enc)
    return base64.b64encode(blob).decode()


_ENV: Any = None
_STR_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join",
                          "format", "format_map"})


def _environment_class() -> type:
    """Jinja2's immutable sandbox with every size-making operation bounded
    (``template_limits``); built on first use so importing this module stays cheap."""
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "+", "%", "**"})
        # captured blocks ({% set %}...{% endset %}, macro bodies, caller()) are joined here
        concat = staticmethod(limits.joined)
        guard_iter = staticmethod(limits.iterate)
        guard_concat = staticmethod(limits.concat)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            limits.check_binop(operator, left, right)
            result = super().call_binop(context, operator, left, right)
            limits.current().spend(limits.cost(result))
            return result

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            budget = limits.current()
            budget.enter()
            try:
                owner = getattr(obj, "__self__", None)
                name = getattr(obj, "__name__", "")
                if isinstance(owner, str | bytes) and name in _STR_METHODS:
                    args = limits.check_str_method(owner, name, args, kwargs)
                result = super().call(context, obj, *args, **kwargs)
            finally:
                budget.depth -= 1
            budget.spend(limits.cost(result), "the result of a call")
            return result

        def wrap_str_format(self, value: Any) -> Any:
            wrapper = super().wrap_str_format(value)
            if wrapper is None:
                return None
            fmt, name = value.__self__, value.__name__

            def bounded_format(*args: Any, **kwargs: Any) -> Any:
                limits.check_str_method(fmt, name, args, kwargs)  # the check ``call`` runs
                return wrapper(*args, **kwargs)

            return bounded_format

        def bound(self, tree: Any) -> Any:
            """Every ``for`` iterates through ``guard_iter`` and every ``~`` goes through
            ``guard_concat`` (rewritten in the parsed tree, before code generation)."""
            from jinja2.visitor import NodeTransformer

            class Rewrite(NodeTransformer):
                def visit_For(self, node: Any) -> Any:
                    self.generic_visit(node)
                    node.iter = nodes.Call(nodes.EnvironmentAttribute("guard_iter"),
                                           [node.iter], [], None, None, lineno=node.lineno)
                    return node

                def visit_Concat(self, node: Any) -> Any:
                    self.generic_visit(node)
                    return nodes.Call(nodes.EnvironmentAttribute("guard_concat"),
                                      list(node.nodes), [], None, None, lineno=node.lineno)

            return Rewrite().visit(tree)

    return BoundedSandbox


def _env() -> Any:
    global _ENV
    if _ENV is None:
        from jinja2 import StrictUndefined

        env = _environment_class()(undefined=StrictUndefined, autoescape=False)
        env.filters.update(_FILTERS)
        env.filters = {name: limits.guard_filter(name, fn) for name, fn in env.filters.items()}
        env.globals.pop("lipsum", None)  # generates text of any length
        _ENV = env
    return _ENV


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Any:
    """The bounded, compiled template for ``source`` (objects share templates; a controller
    re-renders them on every refresh). Compiled inside a render's budget: constant folding
    at compile time calls the guarded filters."""
    env = _env()
    return env.from_string(env.bound(env.parse(source)))


def render_data(
    templates: Mapping[str, str],
    values: Mapping[str, bytes],
    bounds: limits.Limits | None = None,
) -> dict[str, bytes]:
    """Render each template with the decrypted/fetched ``values`` as variables, within
    ``bounds`` (default: ``template_limits.default_limits()``) for all keys together.

    Raises ``InvalidTemplate`` naming the template key -- ``TemplateLimitExceeded`` when a bound
    was hit; the message never contains values.
    """
    from jinja2 import TemplateError

    lim = bounds or limits.default_limits()
    context = {k: v.decode("utf-8", "replace") for k, v in values.items()}
    out: dict[str, bytes] = {}
    total = 0
    with limits.bounded(lim) as budget:
        for key, source in templates.items():
            try:
                if len(source) > lim.max_bytes:
                    raise limits.TemplateLimitExceeded(
                        f"the template is longer than {lim.max_bytes} bytes")
                chunks: list[str] = []
                for chunk in _compiled(source).generate(context):
                    total += len(chunk)
                    if total > lim.max_bytes:
                        raise limits.TemplateLimitExceeded(
                            f"the rendered Secret is over the limit of {lim.max_bytes} bytes")
                    budget.tick()
                    chunks.append(chunk)
                out[key] = "".join(chunks).encode()
            except limits.TemplateLimitExceeded as exc:
                raise limits.TemplateLimitExceeded(
                    f"template for key {key!r}: {exc.message}") from None
            except TemplateError as exc:
                # Jinja's messages name the missing variable or the syntax problem, not values.
                raise InvalidTemplate(f"template for key {key!r}: {type(exc).__name__}: "
                                      f"{_safe(str(exc))}") from None
            except (RecursionError, MemoryError) as exc:
                raise limits.TemplateLimitExceeded(
                    f"template for key {key!r}: {type(exc).__name__} (nested too deeply or "
                    f"too large)") from None
            except Exception as exc:  # a filter failed on a value: do not echo the value
                raise InvalidTemplate(
                    f"template for key {key!r}: {type(exc).__name__} while rendering"
                ) from None
    return out


def _safe(text: str) -> str:
    return text.splitlines()[0][:200] if text else ""
