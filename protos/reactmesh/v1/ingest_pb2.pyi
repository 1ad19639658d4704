from reactmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientBatch(_message.Message):
    __slots__ = ("session_id", "viewer_id", "seq", "stream_id", "counts", "client_time_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    viewer_id: str
    seq: int
    stream_id: str
    counts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReactionCount]
    client_time_ms: int
    def __init__(self, session_id: _Optional[bytes] = ..., viewer_id: _Optional[str] = ..., seq: _Optional[int] = ..., stream_id: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[_common_pb2.ReactionCount, _Mapping]]] = ..., client_time_ms: _Optional[int] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("seq", "outcome", "accepted_taps", "rate_limited_taps", "reject_reason", "detail", "retry_after_ms")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[BatchAck.Outcome]
        ACCEPTED: _ClassVar[BatchAck.Outcome]
        DUPLICATE: _ClassVar[BatchAck.Outcome]
        REJECTED: _ClassVar[BatchAck.Outcome]
        RETRY: _ClassVar[BatchAck.Outcome]
    OUTCOME_UNSPECIFIED: BatchAck.Outcome
    ACCEPTED: BatchAck.Outcome
    DUPLICATE: BatchAck.Outcome
    REJECTED: BatchAck.Outcome
    RETRY: BatchAck.Outcome
    class RejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REJECT_REASON_UNSPECIFIED: _ClassVar[BatchAck.RejectReason]
        BAD_SESSION_ID: _ClassVar[BatchAck.RejectReason]
        BAD_VIEWER_ID: _ClassVar[BatchAck.RejectReason]
        BAD_SEQ: _ClassVar[BatchAck.RejectReason]
        BAD_STREAM_ID: _ClassVar[BatchAck.RejectReason]
        UNKNOWN_EMOJI: _ClassVar[BatchAck.RejectReason]
        BAD_COUNT: _ClassVar[BatchAck.RejectReason]
        TOO_MANY_ENTRIES: _ClassVar[BatchAck.RejectReason]
        DUPLICATE_EMOJI: _ClassVar[BatchAck.RejectReason]
        VIEWER_MUTED: _ClassVar[BatchAck.RejectReason]
        STREAM_DRAINED: _ClassVar[BatchAck.RejectReason]
        EMPTY_BATCH: _ClassVar[BatchAck.RejectReason]
    REJECT_REASON_UNSPECIFIED: BatchAck.RejectReason
    BAD_SESSION_ID: BatchAck.RejectReason
    BAD_VIEWER_ID: BatchAck.RejectReason
    BAD_SEQ: BatchAck.RejectReason
    BAD_STREAM_ID: BatchAck.RejectReason
    UNKNOWN_EMOJI: BatchAck.RejectReason
    BAD_COUNT: BatchAck.RejectReason
    TOO_MANY_ENTRIES: BatchAck.RejectReason
    DUPLICATE_EMOJI: BatchAck.RejectReason
    VIEWER_MUTED: BatchAck.RejectReason
    STREAM_DRAINED: BatchAck.RejectReason
    EMPTY_BATCH: BatchAck.RejectReason
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_TAPS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITED_TAPS_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    outcome: BatchAck.Outcome
    accepted_taps: int
    rate_limited_taps: int
    reject_reason: BatchAck.RejectReason
    detail: str
    retry_after_ms: int
    def __init__(self, seq: _Optional[int] = ..., outcome: _Optional[_Union[BatchAck.Outcome, str]] = ..., accepted_taps: _Optional[int] = ..., rate_limited_taps: _Optional[int] = ..., reject_reason: _Optional[_Union[BatchAck.RejectReason, str]] = ..., detail: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...
