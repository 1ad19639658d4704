from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MuteViewerRequest(_message.Message):
    __slots__ = ("viewer_id", "duration_s", "reason")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    duration_s: int
    reason: str
    def __init__(self, viewer_id: _Optional[str] = ..., duration_s: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class MuteViewerResponse(_message.Message):
    __slots__ = ("until_ms",)
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    until_ms: int
    def __init__(self, until_ms: _Optional[int] = ...) -> None: ...

class UnmuteViewerRequest(_message.Message):
    __slots__ = ("viewer_id",)
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    def __init__(self, viewer_id: _Optional[str] = ...) -> None: ...

class UnmuteViewerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DrainStreamRequest(_message.Message):
    __slots__ = ("stream_id", "duration_s")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    duration_s: int
    def __init__(self, stream_id: _Optional[str] = ..., duration_s: _Optional[int] = ...) -> None: ...

class DrainStreamResponse(_message.Message):
    __slots__ = ("drained_at_ms",)
    DRAINED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    drained_at_ms: int
    def __init__(self, drained_at_ms: _Optional[int] = ...) -> None: ...

class ListMutedRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListMutedResponse(_message.Message):
    __slots__ = ("viewers",)
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    viewers: _containers.RepeatedCompositeFieldContainer[MutedViewer]
    def __init__(self, viewers: _Optional[_Iterable[_Union[MutedViewer, _Mapping]]] = ...) -> None: ...

class MutedViewer(_message.Message):
    __slots__ = ("viewer_id", "until_ms", "reason", "muted_by", "muted_at_ms")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MUTED_BY_FIELD_NUMBER: _ClassVar[int]
    MUTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    until_ms: int
    reason: str
    muted_by: str
    muted_at_ms: int
    def __init__(self, viewer_id: _Optional[str] = ..., until_ms: _Optional[int] = ..., reason: _Optional[str] = ..., muted_by: _Optional[str] = ..., muted_at_ms: _Optional[int] = ...) -> None: ...

class ListFlaggedRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListFlaggedResponse(_message.Message):
    __slots__ = ("viewers",)
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    viewers: _containers.RepeatedCompositeFieldContainer[FlaggedViewer]
    def __init__(self, viewers: _Optional[_Iterable[_Union[FlaggedViewer, _Mapping]]] = ...) -> None: ...

class FlaggedViewer(_message.Message):
    __slots__ = ("viewer_id", "kind", "detail", "raised_at_ms", "until_ms", "raised_by")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    RAISED_BY_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    kind: str
    detail: str
    raised_at_ms: int
    until_ms: int
    raised_by: str
    def __init__(self, viewer_id: _Optional[str] = ..., kind: _Optional[str] = ..., detail: _Optional[str] = ..., raised_at_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., raised_by: _Optional[str] = ...) -> None: ...
