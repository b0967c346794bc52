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
    import yaml

    return yaml.safe_load(value)


@template_filter("toYaml")
def _to_yaml(value: Any) -> str:
    import yaml

    return str(yaml.safe_dump(value, default_flow_style=False, sort_keys=True))


_PEM_BLOCK = (r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]*?"
              r"-----END \1-----")


@template_filter("filterPEM")
def _filter_pem(value: str, pem_type: str = "CERTIFICATE") -> str:
    """Only the PEM blocks of ``pem_type`` (e.g. CERTIFICATE, PRIVATE KEY), in order."""
    import re

    blocks = [m.group(0) for m in re.finditer(_PEM_BLOCK, value) if m.group(1) == pem_type]
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
