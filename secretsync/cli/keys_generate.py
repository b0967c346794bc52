"""``secretsync keys generate``: a new RSA sealing key and its self-signed certificate.

For offline setups and tests, and to pre-create a key to import into a controller. The key
is written first (mode 0600), PKCS#1 PEM like Bitnami's ``tls.key``; the certificate is what
``seal --cert`` takes.
"""

from __future__ import annotations

import argparse
import os
import sys

from secretsync.cli._common import atomic_write
from secretsync.crypto import pem
from secretsync.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, metavar="OUT", help="private key PEM file to write")
    p.add_argument("--cert", required=True, metavar="OUT", help="certificate PEM file to write")
    p.add_argument(
        "--bits", type=int, default=pem.DEFAULT_KEY_BITS, help="RSA key size (default: 4096)"
    )
    p.add_argument(
        "--days",
        type=int,
        default=pem.DEFAULT_CERT_DAYS,
        help="certificate validity in days (default: %(default)s)",
    )
    p.add_argument("--common-name", default=pem.DEFAULT_COMMON_NAME, help="certificate CN")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args: argparse.Namespace) -> int:
    if os.path.abspath(args.key) == os.path.abspath(args.cert):
        raise InvalidInput("--key and --cert must be different files")
    for path in (args.key, args.cert):
        if os.path.exists(path) and not args.force:
            raise InvalidInput(f"{path}: already exists (use --force to overwrite)")
    key = pem.generate_private_key(args.bits)
    cert = pem.self_signed_certificate(key, common_name=args.common_name, days=args.days)
    # written first, owner-only even when overwriting a file with looser bits
    atomic_write(args.key, pem.private_key_to_pem(key), mode=0o600, keep_mode=False)
    atomic_write(args.cert, pem.certificate_to_pem(cert))
    fp = pem.fingerprint(key.public_key())
    print(f"secretsync: wrote {args.key} and {args.cert} (fingerprint {fp})", file=sys.stderr)
    return 0
