from reactmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetTotalsRequest(_message.Message):
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    def __init__(self, stream_id: _Optional[str] = ...) -> None: ...

class GetTotalsResponse(_message.Message):
    __slots__ = ("stream_id", "totals", "as_of_ms")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    totals: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReactionCount]
    as_of_ms: int
    def __init__(self, stream_id: _Optional[str] = ..., totals: _Optional[_Iterable[_Union[_common_pb2.ReactionCount, _Mapping]]] = ..., as_of_ms: _Optional[int] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("stream_id", "start_s", "end_s", "step_s", "emojis")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    STEP_S_FIELD_NUMBER: _ClassVar[int]
    EMOJIS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    start_s: int
    end_s: int
    step_s: int
    emojis: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stream_id: _Optional[str] = ..., start_s: _Optional[int] = ..., end_s: _Optional[int] = ..., step_s: _Optional[int] = ..., emojis: _Optional[_Iterable[str]] = ...) -> None: ...

class HistoryPoint(_message.Message):
    __slots__ = ("start_s", "count")
    START_S_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start_s: int
    count: int
    def __init__(self, start_s: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class HistorySeries(_message.Message):
    __slots__ = ("emoji", "points")
    EMOJI_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    emoji: str
    points: _containers.RepeatedCompositeFieldContainer[HistoryPoint]
    def __init__(self, emoji: _Optional[str] = ..., points: _Optional[_Iterable[_Union[HistoryPoint, _Mapping]]] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("stream_id", "step_s", "series")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_S_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    step_s: int
    series: _containers.RepeatedCompositeFieldContainer[HistorySeries]
    def __init__(self, stream_id: _Optional[str] = ..., step_s: _Optional[int] = ..., series: _Optional[_Iterable[_Union[HistorySeries, _Mapping]]] = ...) -> None: ...
