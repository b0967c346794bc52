"""Where the Kubernetes API server is and how to authenticate to it, read without the client.

Why this exists: ``import kubernetes.config`` costs ~180 ms and ~30 MiB of RSS (it pulls in
google.auth, requests, oauthlib...), yet on the common set-ups ``secretsync.kube`` only needs
a server URL, TLS files and perhaps a bearer token -- it sends every request over its own
``http.client`` connections anyway. So the CLI commands that talk to a cluster and the
controller read those set-ups here, with PyYAML and ``ssl`` only:

- a kubeconfig like kubectl: explicit path, else the first path of ``$KUBECONFIG``, else
  ``~/.kube/config``; ``--context`` or ``current-context``; cluster ``server``,
  ``certificate-authority(-data)``, ``insecure-skip-tls-verify``; user
  ``client-certificate(-data)``, ``client-key(-data)``, ``token``, ``tokenFile``; the
  context's ``namespace``. Relative paths are relative to the kubeconfig's directory;
  ``*-data`` fields go to files only we can read (kopf's login needs paths), removed at exit.
- in-cluster: ``KUBERNETES_SERVICE_HOST/PORT`` and the ServiceAccount's token, CA and
  namespace files. The token is re-read when older than a minute (bound tokens rotate), as
  is a kubeconfig's ``tokenFile`` (as kubectl does).

Anything else (exec credential plugins, auth-provider, proxy-url, tls-server-name,
username/password, impersonation, a server URL without scheme...) is a :class:`Fallback`:
``secretsync.kube.fallback`` then loads the file through ``kubernetes.config``. Errors are
one-line ``KubeError``s naming the file and the problem; they never quote the file's
content (it holds credentials).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from secretsync.errors import KubeError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# A token read from a file is re-read when older than this (client-go uses one minute too).
TOKEN_MAX_AGE = 60.0
_clock: Callable[[], float] = time.monotonic

# Keys we reproduce exactly; "extensions" and "disable-compression" change nothing for us.
_CLUSTER_KEYS = frozenset({"server", "certificate-authority", "certificate-authority-data",
                           "insecure-skip-tls-verify", "extensions", "disable-compression"})
_USER_KEYS = frozenset({"token", "tokenFile", "client-certificate", "client-certificate-data",
                        "client-key", "client-key-data", "extensions"})


class TokenSource:
    """A bearer token: a fixed value, or a file re-read when the copy is older than
    ``TOKEN_MAX_AGE`` seconds. If a re-read fails, the last token read stays in use (the
    API server says 401 if it has really expired). Thread-safe."""

    def __init__(self, *, value: str | None = None, path: str | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._value = value or ""
        self._read_at = _clock()
        if path is not None:
            self._value = self._read()

    def _read(self) -> str:
        assert self.path is not None
        try:
            with open(self.path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KubeError(f"token file {self.path}: {_reason(exc)}") from exc
        if not token:
            raise KubeError(f"token file {self.path} is empty")
        return token

    def get(self) -> str:
        if self.path is None:
            return self._value
        with self._lock:
            now = _clock()
            if now - self._read_at >= TOKEN_MAX_AGE:
                try:
                    self._value = self._read()
                except KubeError:
                    pass  # keep the last token; the next call tries again
                self._read_at = now
            return self._value


@dataclass(frozen=True)
class Settings:
    """Everything ``secretsync.kube`` needs to reach and authenticate to one API server.
    Paths are real files (``*-data`` fields were written to private temporary files)."""

    server: str
    ca_file: str | None
    insecure: bool
    cert_file: str | None
    key_file: str | None
    token: TokenSource | None
    namespace: str | None
    ssl_context: ssl.SSLContext | None  # None for an http:// server


@dataclass(frozen=True)
class Fallback:
    """A set-up we do not reproduce exactly: load it with ``kubernetes.config``."""

    path: str
    why: str


def config_path(explicit: str | None) -> str | None:
    """The kubeconfig kubectl would read: ``explicit``, else the first path of
    ``$KUBECONFIG``, else ``~/.kube/config`` if it exists; None means in-cluster."""
    if explicit:
        return explicit
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if first:
        return first
    default = os.path.expanduser("~/.kube/config")
    return default if os.path.exists(default) else None


def in_cluster() -> bool:
    return os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, "token"))


def load(path: str | None, context: str | None = None) -> Settings | Fallback:
    """Settings from the kubeconfig at ``path`` (``context`` or its current context), or
    from the in-cluster ServiceAccount when ``path`` is None."""
    if path is None:
        return load_in_cluster()
    try:
        return _load_kubeconfig(path, context)
    except KubeError as exc:
        raise KubeError(f"cannot load kubeconfig {path}: {exc.message}") from exc


def load_in_cluster() -> Settings:
    try:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
        if not host or not port:
            raise KubeError("KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set")
        if ":" in host:  # IPv6
            host = f"[{host}]"
        token = TokenSource(path=os.path.join(SERVICE_ACCOUNT_DIR, "token"))
        ca_file = os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt")
        if not os.path.isfile(ca_file):
            raise KubeError(f"CA file {ca_file} does not exist")
        namespace = None
        try:
            with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), encoding="utf-8") as fh:
                namespace = fh.read().strip() or None
        except OSError:
            pass
        return Settings(
            server=f"https://{host}:{port}", ca_file=ca_file, insecure=False, cert_file=None,
            key_file=None, token=token, namespace=namespace,
            ssl_context=_ssl_context(ca_file, f"CA file {ca_file}", False, None, None, ""),
        )
    except KubeError as exc:
        raise KubeError(f"cannot load the in-cluster configuration: {exc.message}") from exc


# --- kubeconfig ----------------------------------------------------------------------------


def _load_kubeconfig(path: str, context: str | None) -> Settings | Fallback:
    doc = _read_yaml(path)
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeError("no current-context is set; pass --context")
    ctx = _named(doc, "contexts", "context", str(ctx_name))
    if ctx is None:
        names = ", ".join(_names(doc, "contexts")) or "none"
        raise KubeError(f"context {ctx_name!r} not found (contexts: {names})")
    cluster_name = ctx.get("cluster")
    if not cluster_name:
        raise KubeError(f"context {ctx_name!r} names no cluster")
    cluster = _named(doc, "clusters", "cluster", str(cluster_name))
    if cluster is None:
        raise KubeError(f"cluster {cluster_name!r} (of context {ctx_name!r}) not found")
    user: Mapping[str, Any] = {}
    user_name = ctx.get("user")
    if user_name:
        found = _named(doc, "users", "user", str(user_name))
        if found is None:
            raise KubeError(f"user {user_name!r} (of context {ctx_name!r}) not found")
        user = found

    other = sorted(set(cluster) - _CLUSTER_KEYS) + sorted(set(user) - _USER_KEYS)
    server = str(cluster.get("server") or "").rstrip("/")
    if other:
        return Fallback(path, f"uses {', '.join(other)}")
    if not server:
        raise KubeError(f"cluster {cluster_name!r} has no server")
    if not server.startswith(("https://", "http://")):
        return Fallback(path, f"server {server!r} has no http(s):// scheme")

    base = os.path.dirname(os.path.abspath(path))
    where_c, where_u = f"cluster {cluster_name!r}", f"user {user_name!r}"
    https = server.startswith("https://")
    ca_file = cert_file = key_file = None
    ca_what = cert_what = ""
    if https:  # as the kubernetes client: TLS files only matter for https
        ca_file, ca_what = _file_or_data(cluster, "certificate-authority", base, where_c)
        cert_file, cert_what = _file_or_data(user, "client-certificate", base, where_u)
        key_file, _ = _file_or_data(user, "client-key", base, where_u)
    insecure = cluster.get("insecure-skip-tls-verify") in (True, "true", "True")

    token = None
    if user.get("token"):
        token = TokenSource(value=str(user["token"]))
    elif user.get("tokenFile"):
        token = TokenSource(path=os.path.normpath(os.path.join(base, str(user["tokenFile"]))))

    ns = ctx.get("namespace")
    return Settings(
        server=server, ca_file=ca_file, insecure=insecure, cert_file=cert_file,
        key_file=key_file, token=token, namespace=str(ns) if ns else None,
        ssl_context=(_ssl_context(ca_file, ca_what, insecure, cert_file, key_file, cert_what)
                     if https else None),
    )


def _read_yaml(path: str) -> Mapping[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise KubeError(_reason(exc)) from exc
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        # never str(exc): it quotes the offending line, which may hold a token
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "syntax error"
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeError(f"not valid YAML: {problem}{at}") from None
    if not isinstance(doc, dict):
        raise KubeError("not a kubeconfig (expected a YAML mapping)")
    return doc


def _names(doc: Mapping[str, Any], section: str) -> list[str]:
    items = doc.get(section)
    return [str(i.get("name")) for i in items or [] if isinstance(i, dict)] if isinstance(
        items, list) else []


def _named(doc: Mapping[str, Any], section: str, key: str, name: str) -> Mapping[str, Any] | None:
    items = doc.get(section)
    if items is not None and not isinstance(items, list):
        raise KubeError(f"{section} is not a list")
    for item in items or []:
        if isinstance(item, dict) and str(item.get("name")) == name:
            body = item.get(key)
            if body is None:
                return {}
            if not isinstance(body, dict):
                raise KubeError(f"{section} entry {name!r}: {key} is not a mapping")
            return body
    return None


def _file_or_data(obj: Mapping[str, Any], field: str, base: str,
                  where: str) -> tuple[str | None, str]:
    """(path, how to name it in errors) of ``field`` or ``field-data`` (data wins, as with
    kubectl and the kubernetes client); a relative path is relative to the kubeconfig."""
    data = obj.get(f"{field}-data")
    if data:
        try:
            raw = base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise KubeError(f"{field}-data of {where} is not valid base64") from None
        return _private_file(raw), f"{field}-data of {where}"
    name = obj.get(field)
    if not name:
        return None, ""
    path = os.path.normpath(os.path.join(base, str(name)))
    if not os.path.isfile(path):
        raise KubeError(f"{field} file {path} of {where} does not exist")
    return path, f"{field} file {path} of {where}"


def _ssl_context(ca_file: str | None, ca_what: str, insecure: bool, cert_file: str | None,
                 key_file: str | None, cert_what: str) -> ssl.SSLContext:
    """The client TLS context; a CA or key pair that cannot be loaded is named."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise KubeError(f"{ca_what}: cannot load it ({_reason(exc)})") from exc
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file, password=_no_password)
        except (OSError, ssl.SSLError, _EncryptedKey) as exc:
            raise KubeError(
                f"{cert_what} (with its client key): cannot load it ({_reason(exc)})"
            ) from exc
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _EncryptedKey(Exception):
    def __str__(self) -> str:
        return "the private key is encrypted, which kubeconfigs do not support"


def _no_password() -> str:
    raise _EncryptedKey


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or "SSL error")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# --- private temporary files for *-data fields ---------------------------------------------

_temp_lock = threading.Lock()
_temp_dir: str | None = None
_temp_files: dict[str, str] = {}


def _private_file(content: bytes) -> str:
    """A file holding ``content``, readable by this user only (in a 0700 directory, mode
    0600), reused for the same content and removed at exit."""
    global _temp_dir
    digest = hashlib.sha256(content).hexdigest()
    with _temp_lock:
        path = _temp_files.get(digest)
        if path is not None and os.path.isfile(path):
            return path
        if _temp_dir is None or not os.path.isdir(_temp_dir):
            _temp_dir = tempfile.mkdtemp(prefix="secretsync-kube-")
            atexit.register(shutil.rmtree, _temp_dir, True)
        fd, path = tempfile.mkstemp(dir=_temp_dir)  # O_EXCL, mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
        except OSError as exc:
            os.unlink(path)
            raise KubeError(f"cannot write a temporary file: {_reason(exc)}") from exc
        _temp_files[digest] = path
        return path
