"""``reactmesh comments``: post, watch, page, pin and delete the live comments of a stream on a broadcaster.

    reactmesh comments post STREAM "text" --viewer VIEWER [--reply-to ID] [--key CLIENT_KEY]
    reactmesh comments watch STREAM [--viewer VIEWER] [--after ID] [--duration SECONDS] [--json]
    reactmesh comments history STREAM [--before ID] [--limit N] [--json]
    reactmesh comments like STREAM COMMENT_ID --viewer VIEWER
    reactmesh comments pin STREAM COMMENT_ID            (an empty id "" unpins)
    reactmesh comments delete STREAM COMMENT_ID

Every subcommand takes ``--broadcaster HOST:PORT`` (default $REACTMESH_BROADCASTER, else 127.0.0.1:7300),
``--token`` (default $REACTMESH_TOKEN) and ``--tls-ca``. ``post`` prints the comment id alone on stdout (a
resend with the same ``--key`` prints the first id), so ``ID=$(reactmesh comments post ...)`` works. ``watch``
prints one line per comment (``[id] viewer: text``), ``- id`` per delete, ``* pinned id`` per pin change and
``! gap`` when comments may be missing, until ``--duration`` passes or Ctrl-C. Exit status: 0 on success, 1 when
the broadcaster refuses (its status and message go to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reactmesh.v1 import comments_pb2


def add_comments_commands(subparsers: Any) -> None:
    """Add ``comments`` and its subcommands to the ``reactmesh`` parser's subparsers."""
    from reactmesh.region_node.cli.tlsopts import broadcaster_options

    common = broadcaster_options("broadcaster address", "bearer token")
    comments = subparsers.add_parser("comments", help="post, watch, page, pin and delete live comments")
    sub = comments.add_subparsers(dest="comments_command", required=True)

    post = sub.add_parser("post", parents=[common], help="post a comment; prints its id")
    post.add_argument("stream", help="stream id")
    post.add_argument("text", help="up to 500 chars")
    post.add_argument("--viewer", required=True, help="viewer id (the token's subject when tokens are required)")
    post.add_argument("--reply-to", default="", metavar="ID", help="the comment this one answers")
    post.add_argument("--key", default="", metavar="CLIENT_KEY", help="resend key: a retry with it is stored once")

    watch = sub.add_parser("watch", parents=[common], help="print comments as they arrive")
    watch.add_argument("stream", help="stream id")
    watch.add_argument("--viewer", default="", help="watching viewer id (sees its own shadowed comments)")
    watch.add_argument("--after", default="", metavar="ID", help="resume after this comment id")
    watch.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: never)")
    watch.add_argument("--json", action="store_true", help="one JSON object per frame")

    history = sub.add_parser("history", parents=[common], help="a page of history, newest first")
    history.add_argument("stream", help="stream id")
    history.add_argument("--before", default="", metavar="ID", help="comments older than this id")
    history.add_argument("--limit", type=int, default=20, help="1..100")
    history.add_argument("--viewer", default="", help="reading viewer id")
    history.add_argument("--json", action="store_true", help="print the page as JSON")

    like = sub.add_parser("like", parents=[common], help="like a comment (once per viewer); prints its likes")
    like.add_argument("stream", help="stream id")
    like.add_argument("comment_id", help="the comment to like")
    like.add_argument("--viewer", required=True, help="viewer id (the token's subject when tokens are required)")

    pin = sub.add_parser("pin", parents=[common], help="pin a comment (a host or moderator token)")
    pin.add_argument("stream", help="stream id")
    pin.add_argument("comment_id", help='the comment to pin; "" unpins')

    delete = sub.add_parser("delete", parents=[common], help="delete a comment everywhere (host or moderator)")
    delete.add_argument("stream", help="stream id")
    delete.add_argument("comment_id", help="the comment to delete")


def line(c: comments_pb2.Comment) -> str:
    """One comment as a line of text."""
    mark = (" (priority)" if c.priority else "") + (f" [{c.likes} likes]" if c.likes else "")
    reply = f" -> {c.reply_to}" if c.reply_to else ""
    return f"[{c.comment_id}] {c.viewer_id}{mark}{reply}: {c.text}"


def as_dict(c: comments_pb2.Comment) -> dict[str, Any]:
    return {
        "comment_id": c.comment_id,
        "stream_id": c.stream_id,
        "viewer_id": c.viewer_id,
        "text": c.text,
        "reply_to": c.reply_to,
        "created_at_ms": c.created_at_ms,
        "priority": c.priority,
    }


def frame_lines(frame: comments_pb2.CommentFrame) -> list[str]:
    """The lines ``watch`` prints for one frame."""
    out = ["! gap: comments may be missing before this point"] if frame.gap else []
    out.extend(line(c) for c in frame.comments)
    if frame.sampled_out:
        out.append(f"~ {frame.sampled_out} comments sampled out")
    out.extend(f"- {cid} deleted" for cid in frame.deleted_ids)
    if frame.HasField("pinned"):
        out.append(f"* pinned {frame.pinned.comment_id}" if frame.pinned.comment_id else "* unpinned")
    return out


async def _watch(stub: Any, args: argparse.Namespace, metadata: Any) -> int:
    from reactmesh.v1 import comments_pb2

    call = stub.WatchComments(
        comments_pb2.WatchCommentsRequest(stream_id=args.stream, viewer_id=args.viewer, after_id=args.after),
        metadata=metadata,
    )
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                msg = await asyncio.wait_for(call.read(), timeout)
            except TimeoutError:
                break
            if not hasattr(msg, "frame"):  # EOF
                break
            frame = msg.frame
            if args.json:
                print(
                    json.dumps(
                        {
                            "comments": [as_dict(c) for c in frame.comments],
                            "deleted_ids": list(frame.deleted_ids),
                            "pinned": frame.pinned.comment_id if frame.HasField("pinned") else None,
                            "gap": frame.gap,
                            "sampled_out": frame.sampled_out,
                        }
                    ),
                    flush=True,
                )
            else:
                for text in frame_lines(frame):
                    print(text, flush=True)
    finally:
        call.cancel()
    return 0


async def run_comments(args: argparse.Namespace) -> int:
    """Run one ``reactmesh comments`` subcommand; return the exit status."""
    import grpc

    from reactmesh.region_node.cli.tlsopts import credentials, open_channel
    from reactmesh.v1 import comments_pb2, comments_pb2_grpc

    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else None
    command = args.comments_command
    try:
        async with open_channel(args.broadcaster, credentials(args.tls_ca)) as channel:
            stub = comments_pb2_grpc.CommentsServiceStub(channel)
            t = args.timeout
            if command == "post":
                req = comments_pb2.PostCommentRequest(
                    stream_id=args.stream,
                    viewer_id=args.viewer,
                    text=args.text,
                    reply_to=args.reply_to,
                    client_key=args.key,
                )
                answer = await stub.PostComment(req, timeout=t, metadata=metadata)
                print(answer.comment.comment_id, flush=True)
                return 0
            if command == "watch":
                return await _watch(stub, args, metadata)
            if command == "history":
                page = await stub.GetComments(
                    comments_pb2.GetCommentsRequest(
                        stream_id=args.stream, before=args.before, limit=args.limit, viewer_id=args.viewer
                    ),
                    timeout=t,
                    metadata=metadata,
                )
                if args.json:
                    pinned = page.pinned.comment_id if page.HasField("pinned") else None
                    body = {"comments": [as_dict(c) for c in page.comments], "next_before": page.next_before}
                    print(json.dumps({**body, "pinned": pinned}))
                else:
                    if page.HasField("pinned") and page.pinned.comment_id:
                        print(f"* pinned {page.pinned.comment_id}")
                    for c in page.comments:
                        print(line(c))
                    if page.next_before:
                        print(f"(more: --before {page.next_before})")
                return 0
            if command == "like":
                req_like = comments_pb2.LikeCommentRequest(
                    stream_id=args.stream, comment_id=args.comment_id, viewer_id=args.viewer
                )
                print((await stub.LikeComment(req_like, timeout=t, metadata=metadata)).likes)
                return 0
            if command == "pin":
                req_pin = comments_pb2.PinCommentRequest(stream_id=args.stream, comment_id=args.comment_id)
                reply = await stub.PinComment(req_pin, timeout=t, metadata=metadata)
                print(f"pinned {reply.pinned.comment_id}" if reply.pinned.comment_id else "unpinned")
                return 0
            if command == "delete":
                req_del = comments_pb2.DeleteCommentRequest(stream_id=args.stream, comment_id=args.comment_id)
                await stub.DeleteComment(req_del, timeout=t, metadata=metadata)
                print(f"deleted {args.comment_id}")
                return 0
    except grpc.aio.AioRpcError as exc:
        print(f"reactmesh comments: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(f"reactmesh comments: unknown subcommand {command!r}", file=sys.stderr)
    return 2
