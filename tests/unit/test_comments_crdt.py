"""CommentSet and its pieces on hand-picked cases: ids sort as time, remove wins whatever the order, a resend key
shows one copy, the floor drops old entries for good, pins are last-writer-wins, the codec refuses bad bodies,
and the blocklist matches whole words only."""

from __future__ import annotations

import pytest

from reactmesh.edge.blocklist import Blocklist
from reactmesh.merge.codec import seal_as
from reactmesh.merge.comments import Comment, CommentSet, comment_id, floor_for, parse_comment_id
from reactmesh.merge.errors import ConfigError, CRDTMisuse, DecodeError
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.tags import COMMENT_SET
from reactmesh.v1 import crdt_pb2


def cid(wall: int, logical: int = 0, replica: str = "a/bcast-0") -> str:
    return comment_id(HlcTimestamp(wall, logical, replica))


def test_ids_sort_as_their_stamps_and_parse_back() -> None:
    stamps = [
        HlcTimestamp(5, 0, "b"),
        HlcTimestamp(5, 1, "a"),
        HlcTimestamp(40, 0, "a"),
        HlcTimestamp(1_700_000, 9, "z"),
    ]
    assert sorted(comment_id(s) for s in stamps) == [comment_id(s) for s in sorted(stamps)]
    assert all(parse_comment_id(comment_id(s)) == s for s in stamps)
    for bad in ("", "12.3.x", "0000000000005.000000000x.a", "0000000000005.0000000000.", "abc"):
        assert parse_comment_id(bad) is None
    assert cid(9_999) < floor_for(10_000) <= cid(10_000)


def test_remove_wins_whether_the_tombstone_arrives_before_or_after_the_comment() -> None:
    c = Comment(cid(10), "s", "ann", "hi")
    early, late = CommentSet(), CommentSet()
    early.delete(c.comment_id)
    assert early.merge(CommentSet().add(c)) == [("comment", c.comment_id)]
    late.add(c)
    assert late.merge(CommentSet().delete(c.comment_id)) == [("delete", c.comment_id)]
    assert early == late and not early.visible(c.comment_id) and early.value() == {}


def test_a_resend_key_shows_only_the_smallest_id_and_the_next_one_once_the_first_is_gone() -> None:
    first, second = (
        Comment(cid(10), "s", "ann", "hi", client_key="k"),
        Comment(cid(12), "s", "ann", "hi", client_key="k"),
    )
    s = CommentSet()
    s.add(second)
    assert s.visible(second.comment_id)
    s.add(first)
    assert s.value() == {first.comment_id: first} and s.canonical("s", "ann", "k") == first
    assert s.canonical("s", "bob", "k") is None


def test_the_floor_drops_older_entries_and_keeps_them_out() -> None:
    s = CommentSet()
    old, new = Comment(cid(10), "s", "ann", "old"), Comment(cid(30), "s", "ann", "new")
    s.add(old)
    s.add(new)
    s.delete(cid(11))
    delta = s.expire(floor_for(20))
    assert s.get(old.comment_id) is None and not s.deleted(cid(11)) and s.get(new.comment_id) == new
    assert s.add(old) == CommentSet()  # below the floor: nothing to record
    other = CommentSet()
    other.add(old)
    other.merge(delta)
    assert other.get(old.comment_id) is None and other.floor_id == floor_for(20)
    assert s.latest_stamp() == parse_comment_id(new.comment_id)


def test_the_pin_is_last_writer_wins() -> None:
    s = CommentSet()
    s.set_pin("s", cid(5), HlcTimestamp(20, 0, "a"))
    assert s.set_pin("s", cid(6), HlcTimestamp(19, 0, "b")) == CommentSet()  # older: loses
    s.set_pin("s", "", HlcTimestamp(21, 0, "b"))
    pin = s.pin("s")
    assert pin is not None and pin.comment_id == ""


def test_bad_comments_are_misuse_and_bad_bodies_do_not_decode() -> None:
    with pytest.raises(CRDTMisuse):
        CommentSet().add(Comment("nope", "s", "ann", "hi"))
    with pytest.raises(CRDTMisuse):
        CommentSet().add(Comment(cid(1), "s", "ann", "x" * 501))
    with pytest.raises(CRDTMisuse):
        CommentSet().delete("nope")
    body = crdt_pb2.CommentSetState()
    body.comments.add(comment_id=cid(1), stream_id="s", viewer_id="ann", text="")
    with pytest.raises(DecodeError):
        CommentSet.decode(seal_as(COMMENT_SET, body))
    with pytest.raises(DecodeError):
        CommentSet.decode(seal_as(COMMENT_SET, crdt_pb2.CommentSetState(tombstones=["x"])))
    with pytest.raises(DecodeError):
        CommentSet.decode(b"\x00garbage")


def test_the_blocklist_matches_whole_words_in_any_case_and_names_the_field_for_a_bad_word() -> None:
    b = Blocklist(["darn", "heck it"])
    assert b.hit("well DARN.") and b.hit("oh heck it all") and b.hit("darn")
    assert not b.hit("darning socks") and not b.hit("undarn") and not b.hit("heck")
    assert not Blocklist().hit("anything")
    with pytest.raises(ConfigError, match=r"comments\.blocklist"):
        Blocklist(["  "])


def test_comment_settings_come_from_the_node_config_and_errors_name_the_field() -> None:
    from reactmesh.region_node.config import from_mapping

    base = {"region": "a", "broadcaster": {"listen": "127.0.0.1:0", "node_id": "a/bcast-0"}}
    ok = from_mapping(
        {**base, "broadcaster": {**base["broadcaster"], "comments": {"blocklist": ["darn"], "sample_rate_per_s": 20}}}
    )
    assert ok.broadcaster is not None
    assert ok.broadcaster.comments.blocklist == ("darn",) and ok.broadcaster.comments.sample_rate_per_s == 20
    with pytest.raises(ConfigError, match="late_join"):
        from_mapping({**base, "broadcaster": {**base["broadcaster"], "comments": {"late_join": 101}}})
    with pytest.raises(ConfigError, match="comments_db_path"):
        from_mapping({**base, "broadcaster": {**base["broadcaster"], "comments_db_path": ":memory:"}})
