from reactmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ForwardedBatch(_message.Message):
    __slots__ = ("session_id", "seq", "stream_id", "counts", "accepted_at_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    seq: int
    stream_id: str
    counts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReactionCount]
    accepted_at_ms: int
    def __init__(self, session_id: _Optional[bytes] = ..., seq: _Optional[int] = ..., stream_id: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[_common_pb2.ReactionCount, _Mapping]]] = ..., accepted_at_ms: _Optional[int] = ...) -> None: ...

class EdgeBatch(_message.Message):
    __slots__ = ("batch_id", "entries")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    entries: _containers.RepeatedCompositeFieldContainer[ForwardedBatch]
    def __init__(self, batch_id: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[ForwardedBatch, _Mapping]]] = ...) -> None: ...

class EdgeAck(_message.Message):
    __slots__ = ("batch_id", "outcomes")
    class EntryOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENTRY_OUTCOME_UNSPECIFIED: _ClassVar[EdgeAck.EntryOutcome]
        APPLIED: _ClassVar[EdgeAck.EntryOutcome]
        DUPLICATE: _ClassVar[EdgeAck.EntryOutcome]
        REFUSED: _ClassVar[EdgeAck.EntryOutcome]
    ENTRY_OUTCOME_UNSPECIFIED: EdgeAck.EntryOutcome
    APPLIED: EdgeAck.EntryOutcome
    DUPLICATE: EdgeAck.EntryOutcome
    REFUSED: EdgeAck.EntryOutcome
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    outcomes: _containers.RepeatedScalarFieldContainer[EdgeAck.EntryOutcome]
    def __init__(self, batch_id: _Optional[int] = ..., outcomes: _Optional[_Iterable[_Union[EdgeAck.EntryOutcome, str]]] = ...) -> None: ...
