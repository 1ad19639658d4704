"""The gRPC ceiling for ``bench ingest`` (issue 16 item 4): an Ingest server that parses each ClientBatch and acks it.

``python -m reactmesh.bench.bare_ingest --port P`` serves ``reactmesh.v1.Ingest`` on 127.0.0.1:P with the same
grpc.aio server options and event loop as the edge, and does no other work: every batch of a Stream is
answered ACCEPTED with its seq and its taps summed (so the SDK's own bookkeeping runs as against the edge). No
validation, no rate limit, no forwarding, no commit. It runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from reactmesh.bench.procs import run_loop
from reactmesh.region_node.node import SERVER_OPTIONS
from reactmesh.v1 import ingest_pb2, ingest_pb2_grpc

_ACCEPTED = ingest_pb2.BatchAck.ACCEPTED


class BareIngest(ingest_pb2_grpc.IngestServicer):
    async def Stream(
        self, request_iterator: AsyncIterator[ingest_pb2.ClientBatch], context: Any
    ) -> AsyncIterator[ingest_pb2.BatchAck]:
        async for batch in request_iterator:
            yield ingest_pb2.BatchAck(
                seq=batch.seq, outcome=_ACCEPTED, accepted_taps=sum(c.count for c in batch.counts)
            )

    async def Send(self, request: ingest_pb2.ClientBatch, context: Any) -> ingest_pb2.BatchAck:
        return ingest_pb2.BatchAck(
            seq=request.seq, outcome=_ACCEPTED, accepted_taps=sum(c.count for c in request.counts)
        )


async def serve(port: int) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    ingest_pb2_grpc.add_IngestServicer_to_server(BareIngest(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench.bare_ingest")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    run_loop(lambda: serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
