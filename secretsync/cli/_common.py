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
from secretsync.cli._deadline import add_timeout_argument, timeout_of
from secretsync.errors import InvalidInput, KeyError_, SecretSyncError

_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def read_input(path: str | None) -> tuple[bytes, str]:
    """Bytes of ``path`` (``-``/None = stdin) and how to name it in errors; at most
    ``MAX_INPUT_BYTES`` (``-f /dev/zero`` is an error, not an exhausted memory)."""
    from secretsync.documents import read_limited

    if path in (None, "-"):
        if sys.stdin is None:  # started with stdin closed (``<&-``)
            raise InvalidInput("stdin is closed; give the input with -f FILE")
        return read_limited(sys.stdin.buffer, "<stdin>"), "<stdin>"
    assert path is not None
    return read_file(path), path


def read_file(path: str) -> bytes:
    """A file's bytes, at most ``MAX_INPUT_BYTES`` (certificates, keys, inputs)."""
    from secretsync.documents import read_limited

    with open(path, "rb") as fh:
        return read_limited(fh, path)


def atomic_write(
    path: str, data: bytes, *, mode: int | None = None, keep_mode: bool = True
) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + ``os.replace``:
    readers see the old file or the new one, never half of one. The temp file is created
    0600, so content is never exposed wider than its final mode.

    - ``mode`` (0o600 for plaintext and private keys) is the file's mode *whatever existed
      before*: an old 0644 file must not stay world-readable once it holds plaintext.
      Without it, an existing file keeps its permission bits (unless ``keep_mode`` is
      false) and a new one gets 0666 minus the umask.
    - A symlink is followed: its target is rewritten (the temp file goes in the target's
      directory, so the rename stays atomic) and the link is kept. Replacing the link would
      leave the real file -- the one Git tracks, say -- on the old content.
    - A device or a pipe (``-w /dev/stdout``, ``>(...)``) is written to directly.
    - An existing file without write permission (0444) is refused with ``PermissionError``
      "read-only file, not rewritten": the rename would bypass the bits silently (and root
      ignores them), yet someone made the file read-only on purpose.
    """
    import errno
    import stat
    import tempfile

    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        # a device or a pipe (-w /dev/stdout, >(...)): a stream, nothing to rename over
        with open(path, "wb") as fh:
            fh.write(data)
        return
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    existing = stat.S_IMODE(st.st_mode) if st is not None else None
    if existing is not None and (not existing & stat.S_IWUSR or not os.access(target, os.W_OK)):
        raise PermissionError(errno.EACCES, "read-only file, not rewritten", path)
    if mode is not None:
        final_mode = mode
    elif keep_mode and existing is not None:
        final_mode = existing
    else:
        final_mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, final_mode)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise


def _naming(exc: OSError, path: str) -> OSError:
    """The same error naming the user's path (``-w out.yaml``), not our temp file."""
    return type(exc)(exc.errno, exc.strerror or type(exc).__name__, path)


def write_output(path: str | None, text: str, *, mode: int | None = None) -> None:
    """stdout, or ``path`` written atomically."""
    if path in (None, "-"):
        if sys.stdout is None:  # started with stdout closed (``>&-``)
            raise InvalidInput("stdout is closed; write the output with -w FILE")
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
    add_timeout_argument(parser)


# --- certificates --------------------------------------------------------------------------


def cert_from_url(url: str, timeout: float = 30.0) -> bytes:
    """The certificate at ``url``, all of it within ``timeout`` seconds in total (a per-read
    timeout lets a server trickling a byte at a time hold us for ever)."""
    import urllib.error
    import urllib.request

    from secretsync.cli import _deadline

    def fetch() -> bytes:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s)
                data: bytes = resp.read(1 << 20)
                return data
        except urllib.error.HTTPError as exc:
            raise KeyError_(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KeyError_(f"{url}: cannot fetch the certificate: {reason}") from None

    return _deadline.call(fetch, timeout, f"{url}: fetching the certificate")


def cert_from_cluster(args: argparse.Namespace) -> bytes:
    """The certificate the controller publishes in ConfigMap ``<name>-cert``, within
    ``--timeout`` seconds in total (kubeconfig credentials included)."""
    from secretsync.cli import _deadline
    from secretsync.cli._kubecert import fetch_cert_pem

    ns, name = args.controller_namespace, args.controller_name
    return _deadline.call(
        lambda: fetch_cert_pem(
            kubeconfig=args.kubeconfig, context=args.context, namespace=ns, name=name
        ),
        timeout_of(args),
        f"fetching the certificate (ConfigMap {ns}/{name}{api.CERT_CONFIGMAP_SUFFIX}) "
        "from the API server",
    )


def certificate_bytes(args: argparse.Namespace, cert: str | None) -> tuple[bytes, str]:
    """PEM bytes of ``--cert`` (a file or an http(s) URL), or fetched from the cluster."""
    if cert is None:
        return cert_from_cluster(args), "certificate from the cluster"
    if cert.startswith(("https://", "http://")):
        return cert_from_url(cert, timeout_of(args)), cert
    return read_file(cert), cert


def public_key_and_fingerprint(args: argparse.Namespace, cert: str | None) -> tuple[Any, str]:
    """The public key to seal to, as kubeseal checks it offline: an expired or not yet valid
    certificate is refused (unless ``--allow-expired``), a key under 2048 bits is warned about
    (one line on stderr), and a bundle's leaf certificate is used."""
    # not via secretsync.keys: the seal path skips its dataclasses and threading imports
    from secretsync.crypto import pem

    data, source = certificate_bytes(args, cert)
    try:
        key, certificate = pem.load_public_key_and_certificate(data)
    except KeyError_ as exc:
        raise KeyError_(f"{source}: {exc.message}") from exc
    if certificate is not None and not getattr(args, "allow_expired", False):
        problem = pem.validity_problem(certificate)
        if problem:
            raise KeyError_(f"{source}: {problem} (--allow-expired seals to it anyway)")
    if key.key_size < pem.MIN_KEY_BITS:
        print(
            f"secretsync: warning: {source}: an RSA key of {key.key_size} bits is weak; "
            f"seal to one of at least {pem.MIN_KEY_BITS} bits",
            file=sys.stderr,
        )
    return key, pem.fingerprint(key)


def load_registry(paths: list[str]) -> Any:
    """A ``KeyRegistry`` with every key in the given PEM / key-Secret files."""
    from secretsync.keys import KeyRegistry, load_private_keys

    registry = KeyRegistry()
    for path in paths:
        for key in load_private_keys(read_file(path), path):
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
