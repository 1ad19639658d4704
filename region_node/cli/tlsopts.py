"""TLS for the viewer-side commands (load, watch, poll, demo): ``--tls-ca FILE`` (default ``$REACTMESH_TLS_CA``)
selects TLS checked against that CA; without it the commands speak plaintext. Viewers present no certificate."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

# grpc is imported where used, so building the ``reactmesh`` parser stays cheap.


def add_tls_ca(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("REACTMESH_TLS_CA"),
        metavar="FILE",
        help="CA bundle that signs the nodes' certificates: speak TLS (default $REACTMESH_TLS_CA; plaintext without)",
    )


def credentials(ca_file: str | None) -> grpc.ChannelCredentials | None:
    """TLS credentials trusting ``ca_file``, or None (plaintext) without one."""
    from reactmesh.region_node.tls import client_credentials

    return client_credentials(ca_file) if ca_file else None


def open_channel(address: str, creds: grpc.ChannelCredentials | None, **kwargs: Any) -> grpc.aio.Channel:
    import grpc

    if creds is None:
        return grpc.aio.insecure_channel(address, **kwargs)
    return grpc.aio.secure_channel(address, creds, **kwargs)
