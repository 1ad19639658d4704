from reactmesh.v1 import common_pb2 as _common_pb2
from reactmesh.v1 import polls_pb2 as _polls_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("stream_id", "resume")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    resume: ResumePoint
    def __init__(self, stream_id: _Optional[str] = ..., resume: _Optional[_Union[ResumePoint, _Mapping]] = ...) -> None: ...

class ResumePoint(_message.Message):
    __slots__ = ("epoch", "seq")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    seq: int
    def __init__(self, epoch: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("stream_id", "epoch", "seq", "kind", "counts", "server_time_ms", "coalesced", "polls", "drained", "degrade_level")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Frame.Kind]
        SNAPSHOT: _ClassVar[Frame.Kind]
        DELTA: _ClassVar[Frame.Kind]
    KIND_UNSPECIFIED: Frame.Kind
    SNAPSHOT: Frame.Kind
    DELTA: Frame.Kind
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    POLLS_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    DEGRADE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    epoch: int
    seq: int
    kind: Frame.Kind
    counts: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReactionCount]
    server_time_ms: int
    coalesced: int
    polls: _containers.RepeatedCompositeFieldContainer[_polls_pb2.Poll]
    drained: bool
    degrade_level: int
    def __init__(self, stream_id: _Optional[str] = ..., epoch: _Optional[int] = ..., seq: _Optional[int] = ..., kind: _Optional[_Union[Frame.Kind, str]] = ..., counts: _Optional[_Iterable[_Union[_common_pb2.ReactionCount, _Mapping]]] = ..., server_time_ms: _Optional[int] = ..., coalesced: _Optional[int] = ..., polls: _Optional[_Iterable[_Union[_polls_pb2.Poll, _Mapping]]] = ..., drained: _Optional[bool] = ..., degrade_level: _Optional[int] = ...) -> None: ...
