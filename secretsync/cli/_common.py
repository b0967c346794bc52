"""Pieces every CLI command shares: reading input, atomic output, certificates and keys.

Kept light: importing this module must not pull in ``kubernetes`` (only ``cert_from_cluster``
does, when it is called) nor a thread pool.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from secretsync import api
from secretsync.errors import InvalidInput, KeyError_, SecretSyncError

_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def read_input(path: str | None) -> tuple[bytes, str]:
    """Bytes of ``path`` (``-``/None = stdin) and how to name it in errors."""
    if path in (None, "-"):
        return sys.stdin.buffer.read(), "<stdin>"
    assert path is not None
    with open(path, "rb") as fh:
        return fh.read(), path


def atomic_write(
    path: str, data: bytes, *, mode: int | None = None, keep_mode: bool = True
) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + ``os.replace``:
    readers see the old file or the new one, never half of one. An existing file keeps its
    permission bits (unless ``keep_mode`` is false); a new one gets ``mode`` (default 0666
    minus the umask). The temp file is created 0600, so content is never exposed wider."""
    import stat
    import tempfile

    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    keep: int | None = None
    if keep_mode:
        try:
            keep = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            keep = None
    final_mode = keep if keep is not None else (mode if mode is not None else 0o666 & ~_umask())
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, final_mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_output(path: str | None, text: str, *, mode: int | None = None) -> None:
    """stdout, or ``path`` written atomically."""
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        assert path is not None
        atomic_write(path, text.encode("utf-8"), mode=mode)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", dest="input", metavar="IN", help="input file (- = stdin)")
    parser.add_argument(
        "-w", "--output-file", dest="output", metavar="OUT", help="write here atomically"
    )
    parser.add_argument(
        "-o",
        "--format",
        choices=("yaml", "json"),
        help="output format (default: the input's format)",
    )


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cluster (to fetch the certificate; resolved as kubectl does)")
    g.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    g.add_argument("--context", help="kubeconfig context (default: current-context)")
    g.add_argument(
        "--controller-namespace",
        default=api.DEFAULT_CONTROLLER_NAMESPACE,
        help="namespace of the controller (default: %(default)s)",
    )
    g.add_argument(
        "--controller-name",
        default=api.DEFAULT_CONTROLLER_NAME,
        help="name of the controller (default: %(default)s)",
    )


# --- certificates --------------------------------------------------------------------------


def cert_from_url(url: str, timeout: float = 30.0) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - https/http only
            data: bytes = resp.read(1 << 20)
            return data
    except urllib.error.HTTPError as exc:
        raise KeyError_(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeyError_(f"{url}: cannot fetch the certificate: {reason}") from None


def cert_from_cluster(args: argparse.Namespace) -> bytes:
    """The certificate the controller publishes in ConfigMap ``<name>-cert``."""
    from secretsync.cli._kubecert import fetch_cert_pem

    return fetch_cert_pem(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.controller_namespace,
        name=args.controller_name,
    )


def certificate_bytes(args: argparse.Namespace, cert: str | None) -> tuple[bytes, str]:
    """PEM bytes of ``--cert`` (a file or an http(s) URL), or fetched from the cluster."""
    if cert is None:
        return cert_from_cluster(args), "certificate from the cluster"
    if cert.startswith(("https://", "http://")):
        return cert_from_url(cert), cert
    with open(cert, "rb") as fh:
        return fh.read(), cert


def public_key_and_fingerprint(args: argparse.Namespace, cert: str | None) -> tuple[Any, str]:
    # not via secretsync.keys: the seal path skips its dataclasses and threading imports
    from secretsync.crypto.pem import fingerprint, load_public_key_pem

    data, source = certificate_bytes(args, cert)
    try:
        key = load_public_key_pem(data)
    except KeyError_ as exc:
        raise KeyError_(f"{source}: {exc.message}") from exc
    return key, fingerprint(key)


def load_registry(paths: list[str]) -> Any:
    """A ``KeyRegistry`` with every key in the given PEM / key-Secret files."""
    from secretsync.keys import KeyRegistry, load_private_keys

    registry = KeyRegistry()
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read()
        for key in load_private_keys(data, path):
            registry.add(key)
    if not len(registry):
        raise KeyError_("no private key loaded (use --private-key FILE)")
    return registry


def wrap(where: str, exc: SecretSyncError) -> SecretSyncError:
    """The same error class, its message prefixed by the document/file it concerns."""
    try:
        new = type(exc)(f"{where}: {exc.message}")
    except TypeError:  # a subclass with a different constructor
        new = SecretSyncError(f"{where}: {exc.message}")
    new.reason = exc.reason
    return new


def fail_input(where: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{where}: {problem}")
