"""Sealing benchmarks: CLI start-up, sealing throughput, unsealing on every core.

Prints figures (no assertions), each next to a baseline measured in the same run:

1. start-up: ``secretsync seal --cert cert.pem -f secret.yaml`` vs
   ``python -c "import cryptography.x509, yaml"`` (median of N interleaved runs; target <= 1.6x);
2. sealing a 1,000-document file through the CLI, in items/s (target >= 5,000 items/s);
3. unsealing items with one thread vs the thread pool (``keys.unseal_many``), in items/s
   (RSA releases the GIL: should approach N-cores x).

The package is byte-compiled first (``compileall``): an installed package has its ``.pyc``
files, and this machine may run with PYTHONDONTWRITEBYTECODE set.

Usage: python bench/bench_seal.py [--runs 15] [--docs 1000] [--items-per-doc 5]
"""

from __future__ import annotations

import argparse
import base64
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from secretsync.cores import usable_cores  # noqa: E402
from secretsync.crypto import pem  # noqa: E402
from secretsync.crypto.format import scope_label, seal_item  # noqa: E402
from secretsync.keys import KeyRegistry, SealingKey, UnsealJob, unseal_many  # noqa: E402

PY = sys.executable
SCRIPT = str(Path(PY).parent / "secretsync")


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def secret_doc(i: int, items: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"s{i}", "namespace": "bench", "labels": {"app": f"a{i}"}},
        "type": "Opaque",
        "data": {f"k{j}": base64.b64encode(os.urandom(32)).decode() for j in range(items)},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--items-per-doc", type=int, default=5)
    ap.add_argument("--unseal-items", type=int, default=600)
    args = ap.parse_args()

    compileall.compile_dir(str(REPO / "secretsync"), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-seal-"))
    key = SealingKey.generate()
    assert key.certificate is not None
    cert = work / "cert.pem"
    cert.write_bytes(pem.certificate_to_pem(key.certificate))
    one = work / "secret.yaml"
    one.write_text(yaml.safe_dump(secret_doc(0, 3)))
    cpus = usable_cores()
    print(f"# bench_seal: python {sys.version.split()[0]}, {cpus} usable core(s), RSA-4096")

    # 1. start-up, interleaved so both see the same machine load
    base_cmd = [PY, "-c", "import cryptography.x509, yaml"]
    seal_cmd = [SCRIPT, "seal", "--cert", str(cert), "-f", str(one)]
    empty_cmd = [PY, "-c", "pass"]
    for cmd in (base_cmd, seal_cmd):
        timed(cmd)  # warm the page cache
    base, seal, empty = [], [], []
    for _ in range(args.runs):
        base.append(timed(base_cmd))
        seal.append(timed(seal_cmd))
        empty.append(timed(empty_cmd))
    mb, ms, me = (statistics.median(x) for x in (base, seal, empty))
    print(f"start-up (median of {args.runs}):")
    print(f"  python -c pass                              {me * 1000:7.1f} ms")
    print(f"  python -c 'import cryptography.x509, yaml'  {mb * 1000:7.1f} ms   (baseline)")
    print(f"  secretsync seal --cert (1 Secret, 3 items)  {ms * 1000:7.1f} ms")
    print(f"  ratio seal / baseline                        {ms / mb:7.2f} x   (target <= 1.6x)")

    # 2. sealing throughput through the CLI (start-up included)
    big = work / "secrets.yaml"
    big.write_text(
        yaml.safe_dump_all([secret_doc(i, args.items_per_doc) for i in range(args.docs)])
    )
    n_items = args.docs * args.items_per_doc
    big_cmd = [SCRIPT, "seal", "--cert", str(cert), "-f", str(big), "-w", str(work / "sealed.yaml")]
    runs = [timed(big_cmd) for _ in range(5)]
    t = statistics.median(runs)
    print(f"seal {args.docs} documents / {n_items} items via CLI (median of 5):")
    print(f"  {t:7.3f} s  = {n_items / t:8.0f} items/s   (target >= 5,000 items/s)")
    pub = key.public_key
    label = scope_label("strict", "bench", "s0")
    start = time.perf_counter()
    for _ in range(2000):
        seal_item(pub, b"x" * 32, label)
    raw = 2000 / (time.perf_counter() - start)
    print(f"  reference: bare seal_item loop             {raw:8.0f} items/s")

    # 3. unsealing: one thread vs the pool
    reg = KeyRegistry([key])
    jobs = [
        UnsealJob(seal_item(pub, os.urandom(32), label), label) for _ in range(args.unseal_items)
    ]
    start = time.perf_counter()
    unseal_many(reg, jobs, workers=1)
    one_t = time.perf_counter() - start
    start = time.perf_counter()
    out = unseal_many(reg, jobs)
    pool_t = time.perf_counter() - start
    assert all(isinstance(x, bytes) for x in out)
    print(f"unseal {args.unseal_items} items (keys.unseal_many):")
    print(f"  1 thread      {args.unseal_items / one_t:8.0f} items/s")
    print(
        f"  {cpus} threads     {args.unseal_items / pool_t:8.0f} items/s   "
        f"speed-up {one_t / pool_t:4.2f}x (ideal {cpus}x)"
    )

    # and the CLI end to end on the sealed file (first 200 documents = 1,000 items)
    sealed_docs = list(yaml.safe_load_all((work / "sealed.yaml").read_text()))[:200]
    part = work / "part.yaml"
    part.write_text(yaml.safe_dump_all(sealed_docs))
    keyfile = work / "key.pem"
    keyfile.write_bytes(pem.private_key_to_pem(key.private_key))
    n = sum(len(d["spec"]["encryptedData"]) for d in sealed_docs)
    t = timed([SCRIPT, "unseal", "--private-key", str(keyfile), "-f", str(part)])
    print(f"  CLI unseal {n} items: {t:6.2f} s = {n / t:6.0f} items/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
