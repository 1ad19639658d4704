"""``reactmesh poll``: create, vote on, close, read and watch live polls on a broadcaster.

    reactmesh poll create STREAM "question" OPTION OPTION [...] [--closes-in SECONDS]
    reactmesh poll vote POLL_ID OPTION --viewer VIEWER      OPTION: its index (0, 1, ...) or its text
    reactmesh poll close POLL_ID
    reactmesh poll get POLL_ID [--json]
    reactmesh poll watch POLL_ID | --stream STREAM [--duration SECONDS] [--once]

Every subcommand takes ``--broadcaster HOST:PORT`` (default $REACTMESH_BROADCASTER, else
127.0.0.1:7300) and ``--token`` (default $REACTMESH_TOKEN). ``create`` prints the new poll's id
alone on stdout, so ``POLL=$(reactmesh poll create ...)`` works. ``watch`` shows live tallies from
the stream's Subscribe frames until the poll closes (or ``--duration`` passes, or Ctrl-C);
``--once`` prints the current state and exits. Exit status: 0 on success, 1 when the broadcaster
refuses (its status and message go to stderr), 2 for a bad option text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, Group

    from reactmesh.v1 import polls_pb2

# grpc, rich and the SDK are imported where used, so building the ``reactmesh`` parser stays cheap.

_BAR = 30


def add_poll_commands(subparsers: Any) -> None:
    """Add ``poll`` and its subcommands to the ``reactmesh`` parser's subparsers."""
    from reactmesh.region_node.cli.tlsopts import broadcaster_options

    common = broadcaster_options("broadcaster address", "bearer token")

    poll = subparsers.add_parser("poll", help="create, vote on, close and watch live polls")
    sub = poll.add_subparsers(dest="poll_command", required=True)

    create = sub.add_parser("create", parents=[common], help="ask a question on a stream; prints the poll id")
    create.add_argument("stream", help="stream id")
    create.add_argument("question", help="up to 280 chars")
    create.add_argument("options", nargs="+", metavar="OPTION", help="2 to 10 options, up to 80 chars each")
    create.add_argument("--closes-in", type=float, default=0.0, metavar="SECONDS", help="close automatically")

    vote = sub.add_parser("vote", parents=[common], help="vote (again, to change the vote)")
    vote.add_argument("poll_id", help="the id create printed")
    vote.add_argument("option", help="index (0, 1, ...) or the option's text")
    vote.add_argument("--viewer", required=True, help="viewer id (one vote per viewer, changeable)")

    close = sub.add_parser("close", parents=[common], help="close a poll now")
    close.add_argument("poll_id", help="the id create printed")

    get = sub.add_parser("get", parents=[common], help="show a poll once")
    get.add_argument("poll_id", help="the id create printed")
    get.add_argument("--json", action="store_true", help="print the poll as JSON")

    watch = sub.add_parser("watch", parents=[common], help="live tallies of a poll or of every poll of a stream")
    watch.add_argument("poll_id", nargs="?", help="the poll to watch (or --stream)")
    watch.add_argument("--stream", help="watch every poll of this stream")
    watch.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: never)")
    watch.add_argument("--once", action="store_true", help="print the current state and exit")


def render(polls: list[polls_pb2.Poll], title: str = "") -> Group:
    """Tables of tallies, one per poll."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from reactmesh.v1 import polls_pb2

    parts: list[Any] = []
    if title:
        parts.append(Text(title, style="bold"))
    if not polls:
        parts.append(Text("no polls yet"))
    for poll in polls:
        total = sum(poll.tallies)
        state = polls_pb2.Poll.State.Name(poll.state)
        table = Table(title=f"{poll.question}  [{state}]  ({poll.poll_id}, stream {poll.stream_id})")
        table.add_column("#", justify="right")
        table.add_column("option")
        table.add_column("votes", justify="right")
        table.add_column("share", justify="right")
        table.add_column("")
        for i, option in enumerate(poll.options):
            n = poll.tallies[i] if i < len(poll.tallies) else 0
            share = n / total if total else 0.0
            table.add_row(str(i), option, str(n), f"{share:.0%}", "#" * round(share * _BAR))
        parts.append(table)
    return Group(*parts)


async def run_poll(args: argparse.Namespace) -> int:
    """Run one ``reactmesh poll`` subcommand; return the exit status."""
    import grpc
    from rich.console import Console

    from reactmesh.region_node.cli.tlsopts import credentials, open_channel
    from reactmesh.v1 import polls_pb2, polls_pb2_grpc

    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else None
    console = Console()
    try:
        async with open_channel(args.broadcaster, credentials(args.tls_ca)) as channel:
            stub = polls_pb2_grpc.PollsStub(channel)
            command = args.poll_command
            if command == "create":
                closes_at = int(time.time() * 1000 + args.closes_in * 1000) if args.closes_in > 0 else 0
                request = polls_pb2.CreatePollRequest(
                    stream_id=args.stream, question=args.question, options=args.options, closes_at_ms=closes_at
                )
                poll = await stub.CreatePoll(request, timeout=args.timeout, metadata=metadata)
                print(poll.poll_id, flush=True)
                return 0
            if command == "vote":
                option = await _option_index(stub, args, metadata)
                if option is None:
                    return 2
                reply = await stub.Vote(
                    polls_pb2.VoteRequest(poll_id=args.poll_id, viewer_id=args.viewer, option=option),
                    timeout=args.timeout,
                    metadata=metadata,
                )
                console.print(render([reply.poll]))
                return 0
            if command == "close":
                poll = await stub.ClosePoll(
                    polls_pb2.ClosePollRequest(poll_id=args.poll_id), timeout=args.timeout, metadata=metadata
                )
                console.print(render([poll]))
                return 0
            if command == "get":
                poll = await stub.GetPoll(
                    polls_pb2.GetPollRequest(poll_id=args.poll_id), timeout=args.timeout, metadata=metadata
                )
                if args.json:
                    print(json.dumps(_as_dict(poll)))
                else:
                    console.print(render([poll]))
                return 0
            if command == "watch":
                return await _watch(stub, args, metadata, console)
    except grpc.aio.AioRpcError as exc:
        print(f"reactmesh poll: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(f"reactmesh poll: unknown subcommand {args.poll_command!r}", file=sys.stderr)
    return 2


async def _option_index(stub: Any, args: argparse.Namespace, metadata: Any) -> int | None:
    from reactmesh.v1 import polls_pb2

    text = args.option
    if text.isdigit():
        return int(text)
    poll = await stub.GetPoll(polls_pb2.GetPollRequest(poll_id=args.poll_id), timeout=args.timeout, metadata=metadata)
    for i, option in enumerate(poll.options):
        if option == text:
            return i
    print(f"reactmesh poll: {text!r} is not an option of {args.poll_id} ({', '.join(poll.options)})", file=sys.stderr)
    return None


async def _watch(stub: Any, args: argparse.Namespace, metadata: Any, console: Console) -> int:
    from rich.live import Live

    from reactmesh.edge.sdk import LiveView, subscribe
    from reactmesh.v1 import polls_pb2

    if (args.poll_id is None) == (args.stream is None):
        print("reactmesh poll watch: give a POLL_ID or --stream, not both", file=sys.stderr)
        return 2
    stream = args.stream
    if args.poll_id is not None:
        poll = await stub.GetPoll(
            polls_pb2.GetPollRequest(poll_id=args.poll_id), timeout=args.timeout, metadata=metadata
        )
        stream = poll.stream_id

    def shown(view: LiveView) -> list[polls_pb2.Poll]:
        if args.poll_id is not None:
            p = view.polls.get(args.poll_id)
            return [p] if p is not None else []
        return list(view.polls.values())

    view = LiveView()
    title = f"stream {stream}" if args.poll_id is None else ""
    from reactmesh.region_node.cli.tlsopts import credentials

    frames = subscribe(
        stream, broadcaster_addresses=[args.broadcaster], token=args.token, credentials=credentials(args.tls_ca)
    )
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        if args.once:
            async for frame in frames:
                view.apply(frame)
                break
            console.print(render(shown(view), title))
            return 0
        with Live(render(shown(view), title), console=console, refresh_per_second=10) as live:
            while deadline is None or time.monotonic() < deadline:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    frame = await asyncio.wait_for(anext(frames), timeout)
                except (TimeoutError, StopAsyncIteration):
                    break
                view.apply(frame)
                polls = shown(view)
                live.update(render(polls, title))
                if args.poll_id is not None and polls and polls[0].state == polls_pb2.Poll.CLOSED:
                    break
        return 0
    finally:
        if isinstance(frames, AsyncGenerator):
            with contextlib.suppress(Exception):
                await frames.aclose()


def _as_dict(poll: polls_pb2.Poll) -> dict[str, Any]:
    from reactmesh.v1 import polls_pb2

    return {
        "poll_id": poll.poll_id,
        "stream_id": poll.stream_id,
        "question": poll.question,
        "options": list(poll.options),
        "tallies": list(poll.tallies),
        "state": polls_pb2.Poll.State.Name(poll.state),
        "created_at_ms": poll.created_at_ms,
        "closes_at_ms": poll.closes_at_ms,
        "closed_at_ms": poll.closed_at_ms,
    }
