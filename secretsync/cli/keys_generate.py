"""``secretsync keys generate``: a new RSA sealing key and its self-signed certificate.

For offline setups and tests, and to pre-create a key to import into a controller. The key
is written first (mode 0600), PKCS#1 PEM like Bitnami's ``tls.key``; the certificate is what
``seal --cert`` takes. Both or neither: the destinations are checked before anything is
written, and should writing the certificate fail all the same, the key file is put back as
it was (removed, or its old content restored) -- a key without its certificate, or an old
certificate next to a new key, is worse than no change.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from secretsync.cli._common import atomic_write, read_file
from secretsync.crypto import pem
from secretsync.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, metavar="OUT", help="private key PEM file to write")
    p.add_argument("--cert", required=True, metavar="OUT", help="certificate PEM file to write")
    p.add_argument(
        "--bits",
        type=_whole_number(pem.MIN_KEY_BITS, pem.MAX_KEY_BITS),
        default=pem.DEFAULT_KEY_BITS,
        help=f"RSA key size, {pem.MIN_KEY_BITS} to {pem.MAX_KEY_BITS} (default: %(default)s)",
    )
    p.add_argument(
        "--days",
        type=_whole_number(1, pem.MAX_CERT_DAYS),
        default=pem.DEFAULT_CERT_DAYS,
        help=f"certificate validity in days, 1 to {pem.MAX_CERT_DAYS} (default: %(default)s)",
    )
    p.add_argument(
        "--common-name",
        type=_common_name,
        default=pem.DEFAULT_COMMON_NAME,
        help=f"certificate CN, 1 to {pem.MAX_COMMON_NAME} characters (default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """argparse ``type=``: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}")
        return value

    return parse


def _common_name(text: str) -> str:
    if not 1 <= len(text) <= pem.MAX_COMMON_NAME:
        raise argparse.ArgumentTypeError(f"must be 1 to {pem.MAX_COMMON_NAME} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("must be UTF-8 text") from None
    return text


def _check_destination(path: str) -> None:
    """Fail before anything is written when ``path`` cannot be written at all."""
    if os.path.isdir(path):
        raise InvalidInput(f"{path}: is a directory")
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        raise InvalidInput(f"{path}: directory {directory} does not exist")


def run(args: argparse.Namespace) -> int:
    if os.path.abspath(args.key) == os.path.abspath(args.cert):
        raise InvalidInput("--key and --cert must be different files")
    for path in (args.key, args.cert):
        if os.path.exists(path) and not args.force:
            raise InvalidInput(f"{path}: already exists (use --force to overwrite)")
        _check_destination(path)
    previous = read_file(args.key) if os.path.isfile(args.key) else None
    key = pem.generate_private_key(args.bits)
    cert = pem.self_signed_certificate(key, common_name=args.common_name, days=args.days)
    # written first, owner-only even when overwriting a file with looser bits
    atomic_write(args.key, pem.private_key_to_pem(key), mode=0o600, keep_mode=False)
    try:
        atomic_write(args.cert, pem.certificate_to_pem(cert))
    except BaseException:
        _put_back(args.key, previous)
        raise
    fp = pem.fingerprint(key.public_key())
    print(f"secretsync: wrote {args.key} and {args.cert} (fingerprint {fp})", file=sys.stderr)
    return 0


def _put_back(path: str, previous: bytes | None) -> None:
    """The key file as it was before this command (best effort: the error that brought us
    here is the one reported)."""
    try:
        if previous is None:
            os.unlink(path)
        else:
            atomic_write(path, previous, mode=0o600, keep_mode=False)
    except OSError:
        pass
