"""ESO's own template functions (engine v2): PKCS#12, PEM, JWK and YAML helpers.

As in ESO, inputs are the raw bytes of a value (a PKCS#12 bundle is binary: decode it first
with ``b64dec`` if the backend stores base64), outputs are PEM text; YAML follows
sigs.k8s.io/yaml (through JSON, so numbers read back are float64, keys sorted, and
``fromYaml`` of junk is a map with an ``Error`` entry rather than a failure).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from secretsync.reconcile import template_limits as limits
from secretsync.reconcile.gotemplate.encoding import from_json_value, go_json
from secretsync.reconcile.gotemplate.execute import Func
from secretsync.reconcile.gotemplate.values import ExecError, GoMap, format_float


def _pem(der: bytes, kind: str) -> bytes:
    body = base64.b64encode(der)
    lines = b"".join(body[i:i + 64] + b"\n" for i in range(0, len(body), 64))
    return b"-----BEGIN " + kind.encode() + b"-----\n" + lines + \
        b"-----END " + kind.encode() + b"-----\n"


_BLOCK = re.compile(rb"(?:^|(?<=\n))-----BEGIN ([^\n]*?)-----[ \t]*\r?\n(.*?)\n?-----END \1-----"
                    rb"[ \t]*(?:\r?\n|$)", re.S)


def _pem_blocks(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(type, DER) of each PEM block, and what follows the last one."""
    blocks: list[tuple[bytes, bytes]] = []
    rest, pos = data, 0
    for m in _BLOCK.finditer(data):
        body = m.group(2)
        if b":" in body.split(b"\n", 1)[0]:
            continue  # headers: not produced by any backend ESO documents
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except ValueError:
            continue
        blocks.append((m.group(1), der))
        pos = m.end()
        rest = data[pos:]
    return blocks, rest


def _filter_pem(pem_type: bytes, data: bytes) -> bytes:
    blocks, rest = _pem_blocks(data)
    kept = [_pem(der, kind.decode("latin-1")) for kind, der in blocks
            if kind.lower() == pem_type.lower()]
    if not kept and rest:
        raise ExecError("error calling filterPEM: error filtering pem: found junk")
    return b"".join(kept)


def _p12(password: bytes, data: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        return pkcs12.load_pkcs12(data, password or None)
    except ValueError:
        if password:
            raise
        return pkcs12.load_pkcs12(data, b"")


def _pkcs12_key_pass(password: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:
        bundle = _p12(password, data)
    except ValueError:
        raise ExecError("unable to decode pkcs12 with password") from None
    if bundle.key is None:
        raise ExecError("unable to decode pkcs12 with password: no private key")
    return bytes(bundle.key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _pkcs12_cert_pass(password: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:
        bundle = _p12(password, data)
    except ValueError:
        raise ExecError("unable to decode pkcs12 certificate with password") from None
    if bundle.cert is None:
        raise ExecError("unable to decode pkcs12 certificate with password: no certificate")
    certs = [bundle.cert.certificate] + [c.certificate for c in bundle.additional_certs]
    ordered = _order_chain(certs)
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in ordered)


def _key_ids(cert: Any) -> tuple[bytes | None, bytes]:
    """(authority key id or None when absent, subject key id or empty)."""
    from cryptography import x509

    try:
        aki = cert.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        aki = None
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = b""
    return aki, ski


def _chain(certs: list[Any]) -> list[Any]:
    """ESO's chain order: each certificate's parent is the first other one whose subject key
    id equals its authority key id (absent ids are equal: empty); exactly one certificate may
    be nobody's parent, the leaf; then leaf, parent, grandparent..."""
    ids = [_key_ids(c) for c in certs]
    parent: list[int | None] = [None] * len(certs)
    is_parent = [False] * len(certs)
    for i, (aki, _) in enumerate(ids):
        for j, (_, ski) in enumerate(ids):
            if i != j and (aki or b"") == ski:
                is_parent[j] = True
                parent[i] = j
                break
    leaves = [i for i in range(len(certs)) if not is_parent[i]]
    if len(leaves) > 1:
        raise ValueError("found multiple leaf or disjunct certificates")
    if not leaves:
        raise ValueError("no leaf certificate found")
    chain: list[Any] = []
    node: int | None = leaves[0]
    while node is not None:
        if len(chain) >= len(certs):
            raise ValueError("constructing chain resulted in cycle")
        chain.append(certs[node])
        node = parent[node]
    return chain


def _order_chain(certs: list[Any]) -> list[Any]:
    try:
        return _chain(certs)
    except ValueError:
        return certs  # ESO returns the bundle's order when no single chain is found


def _is_root(cert: Any) -> bool:
    aki, ski = _key_ids(cert)
    return aki is None or aki == ski


def _filter_cert_chain(cert_type: bytes, data: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    blocks, _ = _pem_blocks(data)
    certs = [x509.load_der_x509_certificate(der) for _, der in blocks]
    ordered = _chain(certs)
    pem = serialization.Encoding.PEM
    if cert_type == b"leaf":
        aki, ski = _key_ids(ordered[0])
        return ordered[0].public_bytes(pem) if aki is not None and aki != ski else b""
    if cert_type == b"intermediate":
        out = []
        for cert in ordered[1:]:
            if _is_root(cert):
                break
            out.append(cert.public_bytes(pem))
        return b"".join(out)
    if cert_type == b"root":
        return ordered[-1].public_bytes(pem) if _is_root(ordered[-1]) else b""
    return b""


def _b64url(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("JWK member is not a string")
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return int.from_bytes(raw, "big")


def _jwk_key(text: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    jwk = json.loads(text)
    kty = jwk.get("kty")
    if kty == "RSA":
        pub = rsa.RSAPublicNumbers(_b64url(jwk["e"]), _b64url(jwk["n"]))
        if "d" not in jwk:
            return pub.public_key()
        p, q, d = _b64url(jwk["p"]), _b64url(jwk["q"]), _b64url(jwk["d"])
        return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                     rsa.rsa_crt_iqmp(p, q), pub).private_key()
    if kty == "EC":
        curves: dict[str, Any] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1,
                                  "P-521": ec.SECP521R1}
        curve = curves[jwk["crv"]]()
        pub_ec = ec.EllipticCurvePublicNumbers(_b64url(jwk["x"]), _b64url(jwk["y"]), curve)
        if "d" not in jwk:
            return pub_ec.public_key()
        return ec.EllipticCurvePrivateNumbers(_b64url(jwk["d"]), pub_ec).private_key()
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        raw = base64.urlsafe_b64decode(jwk["d" if "d" in jwk else "x"] + "==")
        if "d" in jwk:
            return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    raise ValueError("unsupported JWK key type")


def _jwk_public(text: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = _jwk_key(text)
    if not hasattr(key, "public_bytes"):  # ESO: a private JWK is refused here
        raise ValueError("x509: unsupported public key type")
    return bytes(key.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def _jwk_private(text: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = _jwk_key(text)
    if not hasattr(key, "private_bytes"):
        raise ValueError("x509: unknown key type while marshaling PKCS#8")
    return bytes(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


STR = "tag:yaml.org,2002:str"
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_OCTAL = re.compile(r"^[-+]?0o[0-7_]+$")


def _float(dumper: Any, data: float) -> Any:
    if data != data:
        text = ".nan"
    elif data in (float("inf"), float("-inf")):
        text = ".inf" if data > 0 else "-.inf"
    else:
        text = format_float(data).decode()
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


def _yaml_classes() -> tuple[Any, Any]:
    """PyYAML's safe loader and dumper, plus go-yaml v2's extra booleans (y, Y, n, N): read as
    booleans, and so quoted when they are strings; a string that would read back as another
    type is double-quoted, one that cannot be plain for its characters single-quoted (as Go's)."""
    import yaml

    base_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    extra = re.compile(r"^(?:y|Y|n|N)$")

    class Loader(base_loader):  # type: ignore[misc,valid-type]
        pass

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> Any:
        style = "|" if "\n" in data and data.strip(" ") == data else None
        if style is None and dumper.resolve(yaml.ScalarNode, data, (True, False)) != STR:  # type: ignore[no-untyped-call]
            style = '"'  # go-yaml quotes what would read back as another type with "
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    def boolean(loader: Any, node: Any) -> Any:
        if node.value in ("y", "Y", "n", "N"):
            return node.value in ("y", "Y")
        return yaml.SafeLoader.construct_yaml_bool(loader, node)

    # go-yaml v2 has no "=" (value) or "<<" (merge) scalars, and reads 1e3 and 0o7 as numbers
    Dumper.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers
                if tag not in ("tag:yaml.org,2002:value", "tag:yaml.org,2002:merge")]
        for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()}
    Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _GO_FLOAT, list("-+0123456789."))
    Dumper.add_implicit_resolver("tag:yaml.org,2002:int", _GO_OCTAL, list("-+0"))
    Dumper.add_representer(float, _float)
    for cls in (Loader, Dumper):
        cls.add_implicit_resolver("tag:yaml.org,2002:bool", extra, list("yYnN"))
    Loader.add_constructor("tag:yaml.org,2002:bool", boolean)
    Dumper.add_representer(str, text)
    return Loader, Dumper


_YAML: list[tuple[Any, Any]] = []


def _yaml() -> tuple[Any, Any]:
    if not _YAML:
        _YAML.append(_yaml_classes())
    return _YAML[0]


def _yaml_dump(value: Any) -> str:
    import yaml

    text = str(yaml.dump(value, Dumper=_yaml()[1], default_flow_style=False, sort_keys=True,
                         allow_unicode=True, width=1 << 30))
    # PyYAML ends a lone plain scalar with a document end marker; go-yaml does not
    return text.removesuffix("\n...\n") + "\n" if text.endswith("\n...\n") else text


def _to_yaml(value: Any) -> bytes:
    limits.current().need(4 * limits.cost(value) + 16, "a YAML value")
    try:
        plain = json.loads(go_json(value))
    except ValueError:
        return b""
    return _yaml_dump(plain).encode().removesuffix(b"\n")


def _unreadable(text: bytes) -> str | None:
    """go-yaml's reader refuses bad UTF-8 and control characters before parsing: its words."""
    try:
        chars = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = text[exc.start]
        if 0x80 <= bad < 0xC0 or bad >= 0xF8:
            return "invalid leading UTF-8 octet"
        if exc.reason == "unexpected end of data":
            return "incomplete UTF-8 octet sequence"
        return "invalid trailing UTF-8 octet"
    for ch in chars:
        c = ord(ch)
        if (c < 0x20 and ch not in "\t\n\r") or 0x7F <= c <= 0x84 or 0x86 <= c <= 0x9F \
                or c in (0xFFFE, 0xFFFF):
            return "control characters are not allowed"
    return None


def _from_yaml(text: bytes) -> GoMap:
    import yaml

    problem = _unreadable(text)
    if problem is not None:
        return GoMap({b"Error": f"error converting YAML to JSON: yaml: {problem}".encode()})

    loader = _yaml()[0]
    try:
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=loader)):
            raise ValueError("YAML aliases are not allowed in templates")
        doc = yaml.load(text, Loader=loader)  # noqa: S506 (a SafeLoader subclass)
        if doc is None:
            return GoMap()
        if not isinstance(doc, dict):
            what = ("array" if isinstance(doc, list) else "bool" if isinstance(doc, bool)
                    else "number" if isinstance(doc, int | float) else "string")
            raise ValueError(f"error unmarshaling JSON: while decoding JSON: json: cannot "
                             f"unmarshal {what} into Go value of type map[string]interface {{}}")
        value = from_json_value(json.loads(json.dumps(doc, default=str)))
        assert isinstance(value, GoMap)
        return value
    except (ValueError, yaml.YAMLError) as exc:
        return GoMap({b"Error": str(exc).splitlines()[0].encode()})


ESO: dict[str, Func] = {
    "pkcs12key": Func(lambda data: _pkcs12_key_pass(b"", data), "s"),
    "pkcs12keyPass": Func(_pkcs12_key_pass, "ss"),
    "pkcs12cert": Func(lambda data: _pkcs12_cert_pass(b"", data), "s"),
    "pkcs12certPass": Func(_pkcs12_cert_pass, "ss"),
    "filterPEM": Func(_filter_pem, "ss"),
    "filterCertChain": Func(_filter_cert_chain, "ss"),
    "jwkPublicKeyPem": Func(_jwk_public, "s"),
    "jwkPrivateKeyPem": Func(_jwk_private, "s"),
    "toYaml": Func(_to_yaml, "a"),
    "fromYaml": Func(_from_yaml, "s"),
}
