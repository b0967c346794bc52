"""``secretsync fetch-cert``: print the controller's sealing certificate (PEM).

Reads ConfigMap ``<controller-name>-cert`` (key ``cert.pem``) in the controller's namespace,
with the kubeconfig resolved as kubectl does. Save it and seal offline with ``--cert``.
"""

from __future__ import annotations

import argparse
import sys

from secretsync.cli._common import add_cluster_arguments, cert_from_cluster, write_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--output-file", dest="output", metavar="OUT", help="write here")
    add_cluster_arguments(p)


def run(args: argparse.Namespace) -> int:
    from secretsync.crypto.pem import fingerprint
    from secretsync.keys import load_public_key

    pem = cert_from_cluster(args)
    key = load_public_key(pem, f"ConfigMap {args.controller_namespace}/{args.controller_name}-cert")
    text = pem.decode("utf-8")
    write_output(args.output, text if text.endswith("\n") else text + "\n")
    if args.output:
        print(
            f"secretsync: certificate {fingerprint(key)} written to {args.output}", file=sys.stderr
        )
    return 0
