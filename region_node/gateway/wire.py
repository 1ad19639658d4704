"""The gateway's JSON wire forms and its one mapping from gRPC status to HTTP status.

Frames keep the gRPC meaning exactly: ``kind`` "snapshot" counts replace what is shown, "delta" counts add to it;
``(epoch, seq)`` names the frame (``epoch`` is a uint64 and travels as a decimal string, as in protobuf's JSON
mapping; JavaScript numbers cannot hold it). Every WebSocket message is an object with a ``type``: "frame" for
reactions and polls, "comments" for live comments (``comment_frame_json``), "error"; pages ignore types they do not
know.

A comments message is a ``CommentFrame`` of ``comments.proto``: ``comments`` (new ones, and ones framed again when
their likes made them priority: de-duplicate by ``comment_id``), ``deleted_ids``, ``pinned`` present only when the
pin changed (null: unpinned), ``gap`` (some comments were not delivered: fetch history if they matter),
``sampled_out`` (comments left out by sampling), and ``snapshot``: true when the message replaces the comments
shown (a socket's first comments message, and after an upstream resume that could not continue where it was).

A batch is the ``ClientBatch`` of ``ingest.proto`` with ``session_id`` as 32 hex digits and ``counts`` as an object
``{emoji: taps}``. Its answer is the ``BatchAck``: 200 for ACCEPTED and DUPLICATE, 400 for REJECTED (with the
edge's ``reject_reason``), 429 with ``Retry-After`` for RETRY. A body that is not such an object is 400 before
it reaches the edge; a value of the wrong form inside it is sent on, so the edge's reject reasons are the answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import grpc

from reactmesh.edge.errors import RETRY_AFTER_KEY
from reactmesh.v1 import broadcast_pb2, comments_pb2, common_pb2, ingest_pb2, polls_pb2

FRAME_KIND = {broadcast_pb2.Frame.SNAPSHOT: "snapshot", broadcast_pb2.Frame.DELTA: "delta"}

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
"""The HTTP status of each gRPC status an upstream ends a call with; any other is 502."""


class BadRequest(Exception):
    """Raised when a request body is not the JSON object its route takes; answered 400 with the message."""


def poll_json(poll: polls_pb2.Poll) -> dict[str, Any]:
    return {
        "poll_id": poll.poll_id,
        "stream_id": poll.stream_id,
        "question": poll.question,
        "options": list(poll.options),
        "tallies": list(poll.tallies),
        "state": polls_pb2.Poll.State.Name(poll.state).lower(),
        "created_at_ms": poll.created_at_ms,
        "closes_at_ms": poll.closes_at_ms,
        "closed_at_ms": poll.closed_at_ms,
    }


def comment_json(c: comments_pb2.Comment) -> dict[str, Any]:
    return {
        "comment_id": c.comment_id,
        "stream_id": c.stream_id,
        "viewer_id": c.viewer_id,
        "text": c.text,
        "reply_to": c.reply_to,
        "created_at_ms": c.created_at_ms,
        "priority": c.priority,
        "likes": c.likes,
    }


def pinned_json(p: comments_pb2.Pinned) -> dict[str, Any] | None:
    """A pin as JSON: the pinned comment, or None when nothing is pinned."""
    return comment_json(p.comment) if p.comment_id else None


def comment_from_json(stream_id: str, body: object) -> comments_pb2.PostCommentRequest:
    """The PostCommentRequest of a POST /v1/streams/{id}/comments body; BadRequest when its shape is wrong."""
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object")
    fields = {}
    for name in ("viewer_id", "text", "reply_to", "client_key"):
        value = body.get(name, "")
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        fields[name] = value
    return comments_pb2.PostCommentRequest(stream_id=stream_id, **fields)


def counts_json(counts: Any) -> dict[str, int]:
    return {c.emoji: c.count for c in counts}


def batch_from_json(body: object) -> ingest_pb2.ClientBatch:
    """The ClientBatch of a POST /v1/reactions body; BadRequest when it is not an object of the right shape."""
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object")
    session = body.get("session_id")
    viewer = body.get("viewer_id")
    seq = body.get("seq")
    stream = body.get("stream_id")
    counts = body.get("counts")
    client_ms = body.get("client_time_ms", 0)
    if not isinstance(session, str):
        raise BadRequest("session_id must be a string of 32 hex digits")
    if not isinstance(viewer, str) or not isinstance(stream, str):
        raise BadRequest("viewer_id and stream_id must be strings")
    if not _is_int(seq) or seq < 0 or seq >= 2**64:
        raise BadRequest("seq must be an integer 1, 2, 3...")
    if not _is_int(client_ms) or abs(client_ms) >= 2**63:
        raise BadRequest("client_time_ms must be an integer (Unix milliseconds)")
    if not isinstance(counts, Mapping) or not all(_is_int(n) and 0 <= n < 2**64 for n in counts.values()):
        raise BadRequest('counts must be an object of emoji -> taps, e.g. {"heart": 3}')
    try:
        session_id = bytes.fromhex(session)
    except ValueError:
        session_id = b""  # the edge answers BAD_SESSION_ID, as for any session id not of 16 bytes
    return ingest_pb2.ClientBatch(
        session_id=session_id,
        viewer_id=viewer,
        seq=seq,
        stream_id=stream,
        counts=[common_pb2.ReactionCount(emoji=str(e), count=n) for e, n in counts.items()],
        client_time_ms=client_ms,
    )


def ack_json(ack: ingest_pb2.BatchAck) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The HTTP status, body and headers of a BatchAck."""
    body: dict[str, Any] = {"seq": ack.seq, "outcome": ingest_pb2.BatchAck.Outcome.Name(ack.outcome)}
    headers: dict[str, str] = {}
    if ack.outcome in (ingest_pb2.BatchAck.ACCEPTED, ingest_pb2.BatchAck.DUPLICATE):
        body["accepted_taps"] = ack.accepted_taps
        body["rate_limited_taps"] = ack.rate_limited_taps
        return 200, body, headers
    body["detail"] = ack.detail
    if ack.outcome == ingest_pb2.BatchAck.RETRY:
        body["retry_after_ms"] = ack.retry_after_ms
        headers["Retry-After"] = str(max(1, math.ceil(ack.retry_after_ms / 1000)))
        return 429, body, headers
    body["reject_reason"] = ingest_pb2.BatchAck.RejectReason.Name(ack.reject_reason)
    return 400, body, headers


def rpc_error_json(exc: grpc.aio.AioRpcError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The HTTP status, body and headers of an upstream call that ended with a status."""
    code = exc.code()
    body: dict[str, Any] = {"error": code.name, "detail": exc.details() or ""}
    headers: dict[str, str] = {}
    for key, value in exc.trailing_metadata() or ():
        if key == RETRY_AFTER_KEY and isinstance(value, str) and value.isdigit():
            body["retry_after_ms"] = int(value)
            headers["Retry-After"] = str(max(1, math.ceil(int(value) / 1000)))
    return HTTP_STATUS.get(code, 502), body, headers


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
