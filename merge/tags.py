"""The type-tag table: the envelope type of every CRDT in merge/, the version it writes, the versions it reads.

One place, like riak_dt's ``riak_dt_tags.hrl``: a type's ``encode`` seals with ``writes``, its ``decode``
accepts only ``reads`` and fails with DecodeError on any other version (``merge.codec``). A new encoding
gets a new version here, read alongside the old ones until no peer writes them; tags are never reused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tag:
    """One CRDT's envelope identity: its ``type`` string, the version it ``writes``, the versions it ``reads``."""

    type: str
    writes: int = 1
    reads: frozenset[int] = frozenset({1})

    def __post_init__(self) -> None:
        if not self.type:
            raise ValueError("a type tag needs a non-empty type string")
        if self.writes not in self.reads:
            raise ValueError(f"type {self.type!r} writes version {self.writes} but does not read it")


GCOUNTER = Tag("gcounter")
KEYED_GCOUNTER = Tag("keyed_gcounter")
MAX_MAP = Tag("max_map", writes=2, reads=frozenset({1, 2}))
LWW_MAP = Tag("lww_map")
POLL_SET = Tag("poll_set")
EXPIRING_MAP = Tag("expiring_map")
COMMENT_SET = Tag("comment_set")


def _table(*tags: Tag) -> Mapping[str, Tag]:
    table: dict[str, Tag] = {}
    for tag in tags:
        if tag.type in table:
            raise ValueError(f"type tag {tag.type!r} is listed twice")
        table[tag.type] = tag
    return table


TAGS: Mapping[str, Tag] = _table(GCOUNTER, KEYED_GCOUNTER, MAX_MAP, LWW_MAP, POLL_SET, EXPIRING_MAP, COMMENT_SET)
"""type string -> Tag, for every type this build encodes."""
