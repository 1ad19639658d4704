from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

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
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    def __init__(self, stream_id: _Optional[str] = ...) -> None: ...

class DrainStreamResponse(_message.Message):
    __slots__ = ("drained_at_ms",)
    DRAINED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    drained_at_ms: int
    def __init__(self, drained_at_ms: _Optional[int] = ...) -> None: ...
