from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PostCommentRequest(_message.Message):
    __slots__ = ("stream_id", "viewer_id", "text", "reply_to", "client_key")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    CLIENT_KEY_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    viewer_id: str
    text: str
    reply_to: str
    client_key: str
    def __init__(self, stream_id: _Optional[str] = ..., viewer_id: _Optional[str] = ..., text: _Optional[str] = ..., reply_to: _Optional[str] = ..., client_key: _Optional[str] = ...) -> None: ...

class PostCommentResponse(_message.Message):
    __slots__ = ("comment", "duplicate")
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    comment: Comment
    duplicate: bool
    def __init__(self, comment: _Optional[_Union[Comment, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class Comment(_message.Message):
    __slots__ = ("comment_id", "stream_id", "viewer_id", "text", "reply_to", "created_at_ms", "priority", "likes")
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LIKES_FIELD_NUMBER: _ClassVar[int]
    comment_id: str
    stream_id: str
    viewer_id: str
    text: str
    reply_to: str
    created_at_ms: int
    priority: bool
    likes: int
    def __init__(self, comment_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., viewer_id: _Optional[str] = ..., text: _Optional[str] = ..., reply_to: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., priority: _Optional[bool] = ..., likes: _Optional[int] = ...) -> None: ...

class WatchCommentsRequest(_message.Message):
    __slots__ = ("stream_id", "viewer_id", "after_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    viewer_id: str
    after_id: str
    def __init__(self, stream_id: _Optional[str] = ..., viewer_id: _Optional[str] = ..., after_id: _Optional[str] = ...) -> None: ...

class WatchCommentsResponse(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: CommentFrame
    def __init__(self, frame: _Optional[_Union[CommentFrame, _Mapping]] = ...) -> None: ...

class CommentFrame(_message.Message):
    __slots__ = ("stream_id", "comments", "deleted_ids", "pinned", "gap", "sampled_out")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENTS_FIELD_NUMBER: _ClassVar[int]
    DELETED_IDS_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_OUT_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    comments: _containers.RepeatedCompositeFieldContainer[Comment]
    deleted_ids: _containers.RepeatedScalarFieldContainer[str]
    pinned: Pinned
    gap: bool
    sampled_out: int
    def __init__(self, stream_id: _Optional[str] = ..., comments: _Optional[_Iterable[_Union[Comment, _Mapping]]] = ..., deleted_ids: _Optional[_Iterable[str]] = ..., pinned: _Optional[_Union[Pinned, _Mapping]] = ..., gap: _Optional[bool] = ..., sampled_out: _Optional[int] = ...) -> None: ...

class Pinned(_message.Message):
    __slots__ = ("comment_id", "comment")
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    comment_id: str
    comment: Comment
    def __init__(self, comment_id: _Optional[str] = ..., comment: _Optional[_Union[Comment, _Mapping]] = ...) -> None: ...

class GetCommentsRequest(_message.Message):
    __slots__ = ("stream_id", "before", "limit", "viewer_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    before: str
    limit: int
    viewer_id: str
    def __init__(self, stream_id: _Optional[str] = ..., before: _Optional[str] = ..., limit: _Optional[int] = ..., viewer_id: _Optional[str] = ...) -> None: ...

class GetCommentsResponse(_message.Message):
    __slots__ = ("comments", "next_before", "pinned")
    COMMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    comments: _containers.RepeatedCompositeFieldContainer[Comment]
    next_before: str
    pinned: Pinned
    def __init__(self, comments: _Optional[_Iterable[_Union[Comment, _Mapping]]] = ..., next_before: _Optional[str] = ..., pinned: _Optional[_Union[Pinned, _Mapping]] = ...) -> None: ...

class PinCommentRequest(_message.Message):
    __slots__ = ("stream_id", "comment_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    comment_id: str
    def __init__(self, stream_id: _Optional[str] = ..., comment_id: _Optional[str] = ...) -> None: ...

class PinCommentResponse(_message.Message):
    __slots__ = ("pinned",)
    PINNED_FIELD_NUMBER: _ClassVar[int]
    pinned: Pinned
    def __init__(self, pinned: _Optional[_Union[Pinned, _Mapping]] = ...) -> None: ...

class LikeCommentRequest(_message.Message):
    __slots__ = ("stream_id", "comment_id", "viewer_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    comment_id: str
    viewer_id: str
    def __init__(self, stream_id: _Optional[str] = ..., comment_id: _Optional[str] = ..., viewer_id: _Optional[str] = ...) -> None: ...

class LikeCommentResponse(_message.Message):
    __slots__ = ("likes",)
    LIKES_FIELD_NUMBER: _ClassVar[int]
    likes: int
    def __init__(self, likes: _Optional[int] = ...) -> None: ...

class DeleteCommentRequest(_message.Message):
    __slots__ = ("stream_id", "comment_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    comment_id: str
    def __init__(self, stream_id: _Optional[str] = ..., comment_id: _Optional[str] = ...) -> None: ...

class DeleteCommentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
