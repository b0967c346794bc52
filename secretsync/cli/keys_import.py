"""``secretsync keys import``: add existing sealing keys to the cluster (e.g. Bitnami's).

Reads PEM private keys or kubectl-exported key Secrets -- Bitnami's
``kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`` backups work as
they are -- validates each key, and creates a ``kubernetes.io/tls`` Secret labelled
``secretsync.io/sealing-key=active`` per key in the controller namespace. The running
controller picks them up within seconds, without a restart. Idempotent: a key already present
(same fingerprint-derived name) is skipped.
"""

from __future__ import annotations

import argparse
import sys

from secretsync.cli import _deadline
from secretsync.cli._common import add_cluster_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="PEM private key(s) or key Secret export(s) (YAML/JSON, List ok)")
    p.add_argument("--dry-run", action="store_true", help="validate and report; create nothing")
    add_cluster_arguments(p)


def run(args: argparse.Namespace) -> int:
    from secretsync.errors import KubeConflict
    from secretsync.keys import load_private_keys, secret_body_for_key, secret_name_for_key
    from secretsync.kube import Kube

    keys = []
    for path in args.files:
        with open(path, "rb") as fh:
            keys.extend(load_private_keys(fh.read(), path))  # validates each key
    ns = args.controller_namespace
    timeout = _deadline.timeout_of(args)
    kube = None
    if not args.dry_run:
        kube = _deadline.call(
            lambda: Kube.from_config(args.kubeconfig, args.context),
            timeout,
            "loading the kubeconfig",
        )
    created = 0
    for key in keys:
        name = secret_name_for_key(key)
        if kube is None:
            print(f"would import key {key.fingerprint[:16]} as Secret {ns}/{name}")
            continue
        body = secret_body_for_key(key, namespace=ns, name=name)
        try:
            _deadline.call(
                lambda: kube.create_secret(ns, body),  # noqa: B023 - called right here
                timeout,
                f"creating Secret {ns}/{name} on the API server",
            )
            created += 1
            print(f"imported key {key.fingerprint[:16]} as Secret {ns}/{name}")
        except KubeConflict:
            print(f"key {key.fingerprint[:16]} already present (Secret {ns}/{name})")
    if kube is not None:
        kube.close()
    print(f"secretsync: {created} key(s) imported, {len(keys) - created} already present",
          file=sys.stderr)
    return 0
