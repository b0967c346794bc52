"""Sandboxed Jinja2 rendering of ``template.data`` for SealedSecrets and ExternalSecrets.

Templates come from Git (i.e. from anyone who can open a pull request), so they run in
Jinja2's sandbox with ``StrictUndefined``: an unknown name is an error, not an empty string.
Values are exposed as ``str`` (UTF-8, undecodable bytes replaced) so ordinary string
filters work; error messages name the template key and the problem, never a value.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from secretsync.errors import InvalidTemplate

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


_ENV: Any = None


def _env() -> Any:
    global _ENV
    if _ENV is None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        env.filters.update(_FILTERS)
        _ENV = env
    return _ENV


def render_data(templates: Mapping[str, str], values: Mapping[str, bytes]) -> dict[str, bytes]:
    """Render each template with the decrypted/fetched ``values`` as variables.

    Raises ``InvalidTemplate`` naming the template key; the message never contains values.
    """
    from jinja2 import TemplateError

    env = _env()
    context = {k: v.decode("utf-8", "replace") for k, v in values.items()}
    out: dict[str, bytes] = {}
    for key, source in templates.items():
        try:
            out[key] = env.from_string(source).render(context).encode()
        except TemplateError as exc:
            # Jinja's messages name the missing variable or the syntax problem, not values.
            raise InvalidTemplate(f"template for key {key!r}: {type(exc).__name__}: "
                                  f"{_safe(str(exc))}") from None
        except Exception as exc:  # a filter failed on a value: do not echo the value
            raise InvalidTemplate(
                f"template for key {key!r}: {type(exc).__name__} while rendering"
            ) from None
    return out


def _safe(text: str) -> str:
    return text.splitlines()[0][:200] if text else ""
