from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreatePollRequest(_message.Message):
    __slots__ = ("stream_id", "question", "options", "closes_at_ms")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CLOSES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    question: str
    options: _containers.RepeatedScalarFieldContainer[str]
    closes_at_ms: int
    def __init__(self, stream_id: _Optional[str] = ..., question: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ..., closes_at_ms: _Optional[int] = ...) -> None: ...

class VoteRequest(_message.Message):
    __slots__ = ("poll_id", "viewer_id", "option")
    POLL_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    OPTION_FIELD_NUMBER: _ClassVar[int]
    poll_id: str
    viewer_id: str
    option: int
    def __init__(self, poll_id: _Optional[str] = ..., viewer_id: _Optional[str] = ..., option: _Optional[int] = ...) -> None: ...

class VoteResponse(_message.Message):
    __slots__ = ("poll",)
    POLL_FIELD_NUMBER: _ClassVar[int]
    poll: Poll
    def __init__(self, poll: _Optional[_Union[Poll, _Mapping]] = ...) -> None: ...

class ClosePollRequest(_message.Message):
    __slots__ = ("poll_id",)
    POLL_ID_FIELD_NUMBER: _ClassVar[int]
    poll_id: str
    def __init__(self, poll_id: _Optional[str] = ...) -> None: ...

class GetPollRequest(_message.Message):
    __slots__ = ("poll_id",)
    POLL_ID_FIELD_NUMBER: _ClassVar[int]
    poll_id: str
    def __init__(self, poll_id: _Optional[str] = ...) -> None: ...

class Poll(_message.Message):
    __slots__ = ("poll_id", "stream_id", "question", "options", "tallies", "state", "created_at_ms", "closes_at_ms", "closed_at_ms")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Poll.State]
        OPEN: _ClassVar[Poll.State]
        CLOSED: _ClassVar[Poll.State]
    STATE_UNSPECIFIED: Poll.State
    OPEN: Poll.State
    CLOSED: Poll.State
    POLL_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TALLIES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    poll_id: str
    stream_id: str
    question: str
    options: _containers.RepeatedScalarFieldContainer[str]
    tallies: _containers.RepeatedScalarFieldContainer[int]
    state: Poll.State
    created_at_ms: int
    closes_at_ms: int
    closed_at_ms: int
    def __init__(self, poll_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., question: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ..., tallies: _Optional[_Iterable[int]] = ..., state: _Optional[_Union[Poll.State, str]] = ..., created_at_ms: _Optional[int] = ..., closes_at_ms: _Optional[int] = ..., closed_at_ms: _Optional[int] = ...) -> None: ...
