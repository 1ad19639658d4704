from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GossipMessage(_message.Message):
    __slots__ = ("hello", "delta", "delta_ack", "digest", "full_state", "full_state_request")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    DELTA_ACK_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FULL_STATE_FIELD_NUMBER: _ClassVar[int]
    FULL_STATE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    delta: Delta
    delta_ack: DeltaAck
    digest: Digest
    full_state: FullStateChunk
    full_state_request: FullStateRequest
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., delta: _Optional[_Union[Delta, _Mapping]] = ..., delta_ack: _Optional[_Union[DeltaAck, _Mapping]] = ..., digest: _Optional[_Union[Digest, _Mapping]] = ..., full_state: _Optional[_Union[FullStateChunk, _Mapping]] = ..., full_state_request: _Optional[_Union[FullStateRequest, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node_id", "region", "role", "incarnation", "merged_up_to")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    MERGED_UP_TO_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    region: str
    role: str
    incarnation: int
    merged_up_to: int
    def __init__(self, node_id: _Optional[str] = ..., region: _Optional[str] = ..., role: _Optional[str] = ..., incarnation: _Optional[int] = ..., merged_up_to: _Optional[int] = ...) -> None: ...

class Part(_message.Message):
    __slots__ = ("collection", "envelope")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    envelope: bytes
    def __init__(self, collection: _Optional[str] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("seq", "parts", "origin_time_ms", "origin_region")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_REGION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    parts: _containers.RepeatedCompositeFieldContainer[Part]
    origin_time_ms: int
    origin_region: str
    def __init__(self, seq: _Optional[int] = ..., parts: _Optional[_Iterable[_Union[Part, _Mapping]]] = ..., origin_time_ms: _Optional[int] = ..., origin_region: _Optional[str] = ...) -> None: ...

class DeltaAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class Digest(_message.Message):
    __slots__ = ("round", "buckets")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    round: int
    buckets: _containers.RepeatedCompositeFieldContainer[DigestBucket]
    def __init__(self, round: _Optional[int] = ..., buckets: _Optional[_Iterable[_Union[DigestBucket, _Mapping]]] = ...) -> None: ...

class DigestBucket(_message.Message):
    __slots__ = ("collection", "bucket", "of", "hash")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    OF_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    collection: str
    bucket: int
    of: int
    hash: int
    def __init__(self, collection: _Optional[str] = ..., bucket: _Optional[int] = ..., of: _Optional[int] = ..., hash: _Optional[int] = ...) -> None: ...

class FullStateChunk(_message.Message):
    __slots__ = ("transfer_id", "index", "last", "parts")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    transfer_id: int
    index: int
    last: bool
    parts: _containers.RepeatedCompositeFieldContainer[Part]
    def __init__(self, transfer_id: _Optional[int] = ..., index: _Optional[int] = ..., last: _Optional[bool] = ..., parts: _Optional[_Iterable[_Union[Part, _Mapping]]] = ...) -> None: ...

class FullStateRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class HistoryDigestsRequest(_message.Message):
    __slots__ = ("range", "changes", "totals", "limit")
    RANGE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    range: HistoryRange
    changes: HistoryChanges
    totals: HistoryTotals
    limit: int
    def __init__(self, range: _Optional[_Union[HistoryRange, _Mapping]] = ..., changes: _Optional[_Union[HistoryChanges, _Mapping]] = ..., totals: _Optional[_Union[HistoryTotals, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryRange(_message.Message):
    __slots__ = ("minute_lo", "minute_hi", "after")
    MINUTE_LO_FIELD_NUMBER: _ClassVar[int]
    MINUTE_HI_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    minute_lo: int
    minute_hi: int
    after: HistoryBucketRef
    def __init__(self, minute_lo: _Optional[int] = ..., minute_hi: _Optional[int] = ..., after: _Optional[_Union[HistoryBucketRef, _Mapping]] = ...) -> None: ...

class HistoryChanges(_message.Message):
    __slots__ = ("after",)
    AFTER_FIELD_NUMBER: _ClassVar[int]
    after: int
    def __init__(self, after: _Optional[int] = ...) -> None: ...

class HistoryTotals(_message.Message):
    __slots__ = ("after_stream",)
    AFTER_STREAM_FIELD_NUMBER: _ClassVar[int]
    after_stream: str
    def __init__(self, after_stream: _Optional[str] = ...) -> None: ...

class HistoryBucketRef(_message.Message):
    __slots__ = ("stream_id", "minute")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    minute: int
    def __init__(self, stream_id: _Optional[str] = ..., minute: _Optional[int] = ...) -> None: ...

class HistoryDigestsResponse(_message.Message):
    __slots__ = ("buckets", "more", "head", "generation")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[HistoryBucket]
    more: bool
    head: int
    generation: str
    def __init__(self, buckets: _Optional[_Iterable[_Union[HistoryBucket, _Mapping]]] = ..., more: _Optional[bool] = ..., head: _Optional[int] = ..., generation: _Optional[str] = ...) -> None: ...

class HistoryBucket(_message.Message):
    __slots__ = ("stream_id", "minute", "replicas", "changed")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    minute: int
    replicas: _containers.RepeatedCompositeFieldContainer[HistoryReplicaDigest]
    changed: int
    def __init__(self, stream_id: _Optional[str] = ..., minute: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[HistoryReplicaDigest, _Mapping]]] = ..., changed: _Optional[int] = ...) -> None: ...

class HistoryReplicaDigest(_message.Message):
    __slots__ = ("replica", "hash", "rows")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    replica: str
    hash: int
    rows: int
    def __init__(self, replica: _Optional[str] = ..., hash: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class HistoryRowsRequest(_message.Message):
    __slots__ = ("bucket", "replica", "after", "limit")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    bucket: HistoryBucketRef
    replica: str
    after: HistoryRow
    limit: int
    def __init__(self, bucket: _Optional[_Union[HistoryBucketRef, _Mapping]] = ..., replica: _Optional[str] = ..., after: _Optional[_Union[HistoryRow, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryRowsResponse(_message.Message):
    __slots__ = ("rows", "more")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[HistoryRow]
    more: bool
    def __init__(self, rows: _Optional[_Iterable[_Union[HistoryRow, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class HistoryRow(_message.Message):
    __slots__ = ("start_s", "emoji", "count")
    START_S_FIELD_NUMBER: _ClassVar[int]
    EMOJI_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start_s: int
    emoji: str
    count: int
    def __init__(self, start_s: _Optional[int] = ..., emoji: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...
