from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("type", "version", "body")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    type: str
    version: int
    body: bytes
    def __init__(self, type: _Optional[str] = ..., version: _Optional[int] = ..., body: _Optional[bytes] = ...) -> None: ...

class GCounterState(_message.Message):
    __slots__ = ("replicas", "counts")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedScalarFieldContainer[str]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, replicas: _Optional[_Iterable[str]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class KeyedGCounterState(_message.Message):
    __slots__ = ("replicas", "keys")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedCompositeFieldContainer[KeyedSlots]
    def __init__(self, replicas: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[_Union[KeyedSlots, _Mapping]]] = ...) -> None: ...

class KeyedSlots(_message.Message):
    __slots__ = ("key", "replica_index", "counts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REPLICA_INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    key: str
    replica_index: _containers.RepeatedScalarFieldContainer[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[str] = ..., replica_index: _Optional[_Iterable[int]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class HlcTimestamp(_message.Message):
    __slots__ = ("wall_ms", "logical", "replica")
    WALL_MS_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    wall_ms: int
    logical: int
    replica: str
    def __init__(self, wall_ms: _Optional[int] = ..., logical: _Optional[int] = ..., replica: _Optional[str] = ...) -> None: ...

class LwwMapState(_message.Message):
    __slots__ = ("entries", "closed_at")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LwwEntry]
    closed_at: HlcTimestamp
    def __init__(self, entries: _Optional[_Iterable[_Union[LwwEntry, _Mapping]]] = ..., closed_at: _Optional[_Union[HlcTimestamp, _Mapping]] = ...) -> None: ...

class LwwEntry(_message.Message):
    __slots__ = ("key", "value", "stamp")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STAMP_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: int
    stamp: HlcTimestamp
    def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ..., stamp: _Optional[_Union[HlcTimestamp, _Mapping]] = ...) -> None: ...

class PollSetState(_message.Message):
    __slots__ = ("polls",)
    POLLS_FIELD_NUMBER: _ClassVar[int]
    polls: _containers.RepeatedCompositeFieldContainer[PollEntry]
    def __init__(self, polls: _Optional[_Iterable[_Union[PollEntry, _Mapping]]] = ...) -> None: ...

class PollEntry(_message.Message):
    __slots__ = ("poll_id", "spec", "votes")
    POLL_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    poll_id: str
    spec: PollSpec
    votes: bytes
    def __init__(self, poll_id: _Optional[str] = ..., spec: _Optional[_Union[PollSpec, _Mapping]] = ..., votes: _Optional[bytes] = ...) -> None: ...

class PollSpec(_message.Message):
    __slots__ = ("stream_id", "question", "options", "created", "closes_at_ms")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CLOSES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    question: str
    options: _containers.RepeatedScalarFieldContainer[str]
    created: HlcTimestamp
    closes_at_ms: int
    def __init__(self, stream_id: _Optional[str] = ..., question: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ..., created: _Optional[_Union[HlcTimestamp, _Mapping]] = ..., closes_at_ms: _Optional[int] = ...) -> None: ...

class ExpiringMapState(_message.Message):
    __slots__ = ("entries", "floor_ms")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    FLOOR_MS_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ExpiringEntry]
    floor_ms: int
    def __init__(self, entries: _Optional[_Iterable[_Union[ExpiringEntry, _Mapping]]] = ..., floor_ms: _Optional[int] = ...) -> None: ...

class ExpiringEntry(_message.Message):
    __slots__ = ("key", "stamp", "until_ms", "note", "actor")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STAMP_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    key: str
    stamp: HlcTimestamp
    until_ms: int
    note: str
    actor: str
    def __init__(self, key: _Optional[str] = ..., stamp: _Optional[_Union[HlcTimestamp, _Mapping]] = ..., until_ms: _Optional[int] = ..., note: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class CommentSetState(_message.Message):
    __slots__ = ("comments", "tombstones", "pins", "floor_id", "likes")
    COMMENTS_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    PINS_FIELD_NUMBER: _ClassVar[int]
    FLOOR_ID_FIELD_NUMBER: _ClassVar[int]
    LIKES_FIELD_NUMBER: _ClassVar[int]
    comments: _containers.RepeatedCompositeFieldContainer[CommentEntry]
    tombstones: _containers.RepeatedScalarFieldContainer[str]
    pins: _containers.RepeatedCompositeFieldContainer[PinEntry]
    floor_id: str
    likes: _containers.RepeatedCompositeFieldContainer[LikeEntry]
    def __init__(self, comments: _Optional[_Iterable[_Union[CommentEntry, _Mapping]]] = ..., tombstones: _Optional[_Iterable[str]] = ..., pins: _Optional[_Iterable[_Union[PinEntry, _Mapping]]] = ..., floor_id: _Optional[str] = ..., likes: _Optional[_Iterable[_Union[LikeEntry, _Mapping]]] = ...) -> None: ...

class LikeEntry(_message.Message):
    __slots__ = ("comment_id", "viewers")
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    comment_id: str
    viewers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, comment_id: _Optional[str] = ..., viewers: _Optional[_Iterable[str]] = ...) -> None: ...

class CommentEntry(_message.Message):
    __slots__ = ("comment_id", "stream_id", "viewer_id", "text", "reply_to", "client_key", "priority", "shadow")
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    CLIENT_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    comment_id: str
    stream_id: str
    viewer_id: str
    text: str
    reply_to: str
    client_key: str
    priority: bool
    shadow: bool
    def __init__(self, comment_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., viewer_id: _Optional[str] = ..., text: _Optional[str] = ..., reply_to: _Optional[str] = ..., client_key: _Optional[str] = ..., priority: _Optional[bool] = ..., shadow: _Optional[bool] = ...) -> None: ...

class PinEntry(_message.Message):
    __slots__ = ("stream_id", "stamp", "comment_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    STAMP_FIELD_NUMBER: _ClassVar[int]
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    stamp: HlcTimestamp
    comment_id: str
    def __init__(self, stream_id: _Optional[str] = ..., stamp: _Optional[_Union[HlcTimestamp, _Mapping]] = ..., comment_id: _Optional[str] = ...) -> None: ...
