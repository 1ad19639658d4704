"""``reactmesh certs``: a CA and a node certificate as the files of Secret ``reactmesh-tls`` (k8s/README.md).

    reactmesh certs --ca-dir ca/ --out tls-a/ --name agg-0.agg --name bcast.reactmesh-a.svc.cluster.local ...

Writes ``ca.crt``, ``tls.crt`` and ``tls.key`` into ``--out`` (the key names k8s/ mounts, as cert-manager writes
them), so ``kubectl create secret generic reactmesh-tls --from-file=DIR/`` makes the Secret. The CA lives in
``--ca-dir`` (``ca.crt``, ``ca.key``): created on first use, reused after, so every region's certificate is signed
by the same CA and the regions accept each other. ``--name`` is repeatable: DNS names and IP addresses, each a
subject alternative name. Keys are ECDSA P-256 (``region_node/certs.py``). For a start or a test cluster; a
production cluster can issue the same Secret with cert-manager instead, and should keep ``ca.key`` offline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reactmesh.region_node.certs import CertificateAuthority, write_tls_secret

CA_CERT, CA_KEY = "ca.crt", "ca.key"


def add_certs_command(subparsers: Any) -> None:
    certs = subparsers.add_parser("certs", help="write a CA and a node certificate for Secret reactmesh-tls")
    certs.add_argument("--ca-dir", required=True, help=f"the CA's directory ({CA_CERT}, {CA_KEY}); created if empty")
    certs.add_argument("--out", required=True, help="where ca.crt, tls.crt and tls.key are written")
    certs.add_argument(
        "--name", action="append", required=True, help="a DNS name or IP the certificate is valid for; repeatable"
    )
    certs.add_argument("--common-name", default="reactmesh", help="the certificate's subject CN (default reactmesh)")
    certs.add_argument("--days", type=int, default=90, help="validity of the node certificate (default 90)")
    certs.add_argument("--ca-days", type=int, default=365, help="validity of a new CA (default 365)")


def run_certs(args: argparse.Namespace) -> int:
    if args.days <= 0 or args.ca_days <= 0:
        print("reactmesh certs: --days and --ca-days must be > 0", file=sys.stderr)
        return 2
    ca_dir = Path(args.ca_dir)
    ca_cert, ca_key = ca_dir / CA_CERT, ca_dir / CA_KEY
    if ca_cert.exists() != ca_key.exists():
        print(f"reactmesh certs: {ca_dir} holds only one of {CA_CERT} and {CA_KEY}", file=sys.stderr)
        return 2
    if ca_cert.exists():
        try:
            ca = CertificateAuthority.load(ca_cert, ca_key)
        except (OSError, ValueError) as exc:
            print(f"reactmesh certs: cannot load the CA in {ca_dir}: {exc}", file=sys.stderr)
            return 2
    else:
        ca = CertificateAuthority.create("reactmesh CA", days=args.ca_days)
        ca.write(ca_dir, CA_CERT, CA_KEY)
        print(f"new CA: {ca_cert} (keep {ca_key} private)", file=sys.stderr)
    names = tuple(dict.fromkeys(n.strip() for n in args.name if n.strip()))
    files = write_tls_secret(ca, args.out, args.common_name, names, days=args.days)
    for path in (files.ca_file, files.cert_file, files.key_file):
        print(path)
    return 0
