"""TLS for the viewer-side commands (load, watch, poll, admin, demo), and the options every command calling a
broadcaster shares (``broadcaster_options``): ``--tls-ca FILE`` (default ``$REACTMESH_TLS_CA``)
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


DEFAULT_BROADCASTER = "127.0.0.1:7300"


def broadcaster_options(broadcaster_help: str, token_help: str) -> argparse.ArgumentParser:
    """The options of the commands that call a broadcaster (poll, admin), as a parent parser: ``--broadcaster``
    ($REACTMESH_BROADCASTER), ``--token`` ($REACTMESH_TOKEN), ``--timeout`` and ``--tls-ca``."""
    env = os.environ.get
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--broadcaster",
        default=env("REACTMESH_BROADCASTER", DEFAULT_BROADCASTER),
        metavar="HOST:PORT",
        help=f"{broadcaster_help} ($REACTMESH_BROADCASTER)",
    )
    common.add_argument("--token", default=env("REACTMESH_TOKEN"), help=f"{token_help} (default $REACTMESH_TOKEN)")
    common.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    add_tls_ca(common)
    return common
