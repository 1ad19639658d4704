"""The envelope every encoded CRDT travels in: a type tag, a version, and a body.

Decoding checks the tag and the version before touching the body, and fails loudly
(DecodeError naming what it found and what it expected) rather than guessing, as riak_dt's
``from_binary`` does. Which tags and versions exist is ``merge.tags``; ``seal_as`` and ``open_as``
read them from there.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from reactmesh.merge.errors import DecodeError
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2


def seal(type_tag: str, version: int, body: Message | bytes) -> bytes:
    """Wrap a body (a protobuf message, or bytes already serialised) in an envelope."""
    raw = body if isinstance(body, bytes) else body.SerializeToString()
    return crdt_pb2.Envelope(type=type_tag, version=version, body=raw).SerializeToString()


def seal_as(tag: Tag, body: Message | bytes) -> bytes:
    """Wrap a body in an envelope of ``tag`` at the version it writes."""
    return seal(tag.type, tag.writes, body)


def open_as(data: bytes, tag: Tag) -> bytes:
    """The body of an envelope of ``tag`` in a version it reads; DecodeError for anything else."""
    return open_envelope(data, tag.type, tag.reads)[1]


def open_envelope(data: bytes, type_tag: str, versions: frozenset[int]) -> tuple[int, bytes]:
    """Return (version, body bytes) of an envelope of ``type_tag``.

    Raises DecodeError for garbage, another type, or a version not in ``versions``.
    """
    env = crdt_pb2.Envelope()
    try:
        env.ParseFromString(data)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"not a reactmesh CRDT envelope: {exc}") from exc
    if env.type != type_tag:
        raise DecodeError(f"expected a {type_tag!r} envelope, got type {env.type!r}")
    if env.version not in versions:
        known = ", ".join(str(v) for v in sorted(versions))
        raise DecodeError(f"{type_tag!r} encoding version {env.version} is not supported (known: {known})")
    return env.version, env.body


def parse_body(body: bytes, message: Message, type_tag: str) -> None:
    """Parse ``body`` into ``message`` in place; DecodeError when it is not valid protobuf."""
    try:
        message.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"corrupt {type_tag!r} body: {exc}") from exc


def envelope_type(data: bytes) -> str:
    """The type tag of an envelope, for dispatch; DecodeError for garbage."""
    env = crdt_pb2.Envelope()
    try:
        env.ParseFromString(data)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"not a reactmesh CRDT envelope: {exc}") from exc
    if not env.type:
        raise DecodeError("envelope has no type tag")
    return env.type
