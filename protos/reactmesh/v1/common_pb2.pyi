from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReactionCount(_message.Message):
    __slots__ = ("emoji", "count")
    EMOJI_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    emoji: str
    count: int
    def __init__(self, emoji: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...
