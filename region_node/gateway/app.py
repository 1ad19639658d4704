"""The gateway's HTTP and WebSocket routes (Starlette) and its server (uvicorn, websockets).

Routes (``openapi`` documents them; ``/v1/openapi.json`` serves the document):

- ``WS /v1/streams/{id}``: the stream's frames as JSON text messages (``wire``), from the gateway's one upstream
  Subscribe for the stream (``fanout``). The token comes as ``?access_token=`` or as a ``bearer.<token>``
  WebSocket subprotocol next to ``reactmesh.v1`` (browsers cannot set headers on a WebSocket); it is checked
  against the same ``edge.auth`` policy as Subscribe (action SUBSCRIBE), when the socket opens and before every
  frame (an expired token ends the socket). A refusal is one ``{"type": "error", "status": 401|403|400}`` message,
  then close code 4000 + status.
- ``POST /v1/reactions``: one batch through the region's edge (``Ingest.Send``): exactly once per (session, seq)
  however often it is resent, the same reject reasons, 429 + ``Retry-After`` when the edge says RETRY.
- ``GET /v1/streams/{id}/totals``, ``GET /v1/streams/{id}/history``: ``Query`` on the broadcaster.
- ``POST /v1/polls``, ``GET /v1/polls/{id}``, ``POST /v1/polls/{id}/votes``: ``Polls`` on the broadcaster.
- Live comments (``CommentsService`` on the broadcaster): ``POST /v1/streams/{id}/comments`` (resend-safe by
  ``client_key``), ``GET /v1/streams/{id}/comments?before=&limit=`` (history pages), ``POST
  /v1/streams/{id}/comments/{comment_id}/likes``, ``DELETE /v1/streams/{id}/comments/{comment_id}``, ``PUT`` and
  ``DELETE /v1/streams/{id}/pin``; on the socket, messages of type "comments" (``wire``).
- ``GET /overlay``: the overlay page (``static/``); ``GET /v1/config``: what the page needs (reaction set, auth).
- ``GET /healthz``: 200 while the process serves HTTP (liveness: it never looks upstream). ``GET /readyz``: 200
  when both upstreams answer ``grpc.health.v1`` SERVING within ``READY_TIMEOUT_S`` and the upstream token file (if
  configured) holds a token, else 503; either way the body names each upstream's state (readiness).

HTTP calls pass the caller's ``Authorization: Bearer`` header on as call metadata, so the upstream service applies
its own policy; its gRPC status becomes the HTTP status through ``wire.HTTP_STATUS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from reactmesh.edge.auth import Action, Authorizer, Principal
from reactmesh.edge.errors import ServiceError
from reactmesh.edge.limits import is_stream_id
from reactmesh.region_node.gateway.config import GatewayConfig
from reactmesh.region_node.gateway.fanout import Hub
from reactmesh.region_node.gateway.openapi import document
from reactmesh.region_node.gateway.wire import (
    HTTP_STATUS,
    BadRequest,
    ack_json,
    batch_from_json,
    comment_from_json,
    comment_json,
    counts_json,
    pinned_json,
    poll_json,
    rpc_error_json,
)
from reactmesh.v1 import (
    broadcast_pb2_grpc,
    comments_pb2,
    comments_pb2_grpc,
    ingest_pb2_grpc,
    polls_pb2,
    polls_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SUBPROTOCOL = "reactmesh.v1"
_BEARER_PROTOCOL = "bearer."
CALL_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 1.0
"""How long ``/readyz`` waits for each upstream's health answer (keep the readiness probe's timeout above it)."""
ChannelFactory = Callable[[str], Any]


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the node's process owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


class Gateway:
    """One gateway: its upstream channels, its Hub and its HTTP server. ``address`` is set by ``start``."""

    SERVICE_NAME = "gateway"

    def __init__(
        self, config: GatewayConfig, authorizer: Authorizer, channel_factory: ChannelFactory | None = None
    ) -> None:
        self.config = config
        self.authorizer = authorizer
        factory = channel_factory or grpc.aio.insecure_channel
        self._edge_channel = factory(config.edge)
        self._bcast_channel = factory(config.broadcaster)
        self._ingest = ingest_pb2_grpc.IngestStub(self._edge_channel)
        self._query = query_pb2_grpc.QueryStub(self._bcast_channel)
        self._polls = polls_pb2_grpc.PollsStub(self._bcast_channel)
        self._comments = comments_pb2_grpc.CommentsServiceStub(self._bcast_channel)
        self._health = {
            "edge": health_pb2_grpc.HealthStub(self._edge_channel),
            "broadcaster": health_pb2_grpc.HealthStub(self._bcast_channel),
        }
        broadcast = broadcast_pb2_grpc.BroadcastStub(self._bcast_channel)
        comments = self._comments
        self.hub = Hub(config, lambda: broadcast, self._upstream_metadata, comments_stub=lambda: comments)
        self.address: str | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.app = Starlette(
            routes=[
                Route("/", lambda _: RedirectResponse("/overlay")),
                Route("/overlay", lambda _: FileResponse(STATIC / "overlay.html")),
                Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
                Route("/healthz", lambda _: _json(200, {"status": "serving"})),
                Route("/readyz", self._readyz),
                Route("/v1/openapi.json", lambda _: _json(200, document(config.reactions))),
                Route("/v1/config", self._page_config),
                Route("/v1/reactions", self._post_reactions, methods=["POST"]),
                Route("/v1/streams/{stream_id}/totals", self._totals),
                Route("/v1/streams/{stream_id}/history", self._history),
                Route("/v1/polls", self._create_poll, methods=["POST"]),
                Route("/v1/polls/{poll_id}", self._get_poll),
                Route("/v1/polls/{poll_id}/votes", self._vote, methods=["POST"]),
                Route("/v1/streams/{stream_id}/comments", self._post_comment, methods=["POST"]),
                Route("/v1/streams/{stream_id}/comments", self._comment_history, methods=["GET"]),
                # comment ids hold the node id ("a/bcast-0"): a path converter, so "/" and "%2F" both work
                Route("/v1/streams/{stream_id}/comments/{comment_id:path}/likes", self._like, methods=["POST"]),
                Route("/v1/streams/{stream_id}/comments/{comment_id:path}", self._delete_comment, methods=["DELETE"]),
                Route("/v1/streams/{stream_id}/pin", self._pin, methods=["PUT", "DELETE"]),
                WebSocketRoute("/v1/streams/{stream_id}", self._stream_socket),
            ]
        )

    # -- upstream credentials --

    def _upstream_metadata(self) -> tuple[tuple[str, str], ...]:
        """The gateway's own token for the shared Subscribe calls (re-read at every dial)."""
        path = self.config.upstream_token_file
        if path is None:
            return ()
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            log.warning("gateway upstream token %s unreadable: %s", path, exc)
            return ()
        return (("authorization", f"Bearer {token}"),)

    # -- health --

    async def _upstream_state(self, stub: Any) -> str:
        """An upstream's overall health: a ServingStatus name, or the gRPC code of the failed check."""
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=READY_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def _token_problem(self) -> str | None:
        path = self.config.upstream_token_file
        if path is None:
            return None
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            return f"upstream token {path} unreadable: {exc.strerror}"
        return None if token else f"upstream token {path} is empty"

    async def _readyz(self, _: Request) -> Response:
        states = await asyncio.gather(*(self._upstream_state(stub) for stub in self._health.values()))
        upstreams = dict(zip(self._health, states, strict=True))
        problems = [f"{name}: {state}" for name, state in upstreams.items() if state != "SERVING"]
        if (token := self._token_problem()) is not None:
            problems.append(token)
        if self._closing:
            problems.append("stopping")
        body: dict[str, Any] = {"status": "not ready" if problems else "ready", "upstreams": upstreams}
        if problems:
            body["problems"] = problems
        return _json(503 if problems else 200, body)

    @staticmethod
    def _caller_metadata(request: Request) -> tuple[tuple[str, str], ...]:
        value = request.headers.get("authorization")
        return (("authorization", value),) if value else ()

    # -- HTTP routes --

    async def _page_config(self, _: Request) -> Response:
        return _json(200, {"reactions": list(self.config.reactions), "auth": self.authorizer.enabled})

    async def _call(self, request: Request, make: Callable[[tuple[tuple[str, str], ...]], Any]) -> Any:
        """Run one upstream call with the caller's metadata; an RpcError becomes the HTTP answer."""
        try:
            return await make(self._caller_metadata(request))
        except grpc.aio.AioRpcError as exc:
            status, body, headers = rpc_error_json(exc)
            return _json(status, body, headers)

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from None

    async def _post_reactions(self, request: Request) -> Response:
        try:
            batch = batch_from_json(await self._body(request))
        except BadRequest as exc:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": str(exc)})
        ack = await self._call(request, lambda md: self._ingest.Send(batch, metadata=md, timeout=CALL_TIMEOUT_S))
        if isinstance(ack, Response):
            return ack
        status, body, headers = ack_json(ack)
        return _json(status, body, headers)

    async def _totals(self, request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        reply = await self._call(
            request,
            lambda md: self._query.GetTotals(
                query_pb2.GetTotalsRequest(stream_id=stream_id), metadata=md, timeout=CALL_TIMEOUT_S
            ),
        )
        if isinstance(reply, Response):
            return reply
        return _json(
            200, {"stream_id": reply.stream_id, "totals": counts_json(reply.totals), "as_of_ms": reply.as_of_ms}
        )

    async def _history(self, request: Request) -> Response:
        q = request.query_params
        try:
            req = query_pb2.GetHistoryRequest(
                stream_id=request.path_params["stream_id"],
                start_s=int(q.get("start_s", "0")),
                end_s=int(q.get("end_s", "0")),
                step_s=int(q.get("step_s", "0")),
                emojis=q.getlist("emoji"),
            )
        except ValueError:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": "start_s, end_s and step_s are integers"})
        reply = await self._call(request, lambda md: self._query.GetHistory(req, metadata=md, timeout=CALL_TIMEOUT_S))
        if isinstance(reply, Response):
            return reply
        series = {s.emoji: [[p.start_s, p.count] for p in s.points] for s in reply.series}
        return _json(200, {"stream_id": reply.stream_id, "step_s": reply.step_s, "series": series})

    async def _create_poll(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            req = polls_pb2.CreatePollRequest(
                stream_id=str(body.get("stream_id", "")),
                question=str(body.get("question", "")),
                options=[str(o) for o in body.get("options", [])],
                closes_at_ms=int(body.get("closes_at_ms", 0)),
            )
        except (BadRequest, TypeError, ValueError) as exc:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": str(exc)})
        poll = await self._call(request, lambda md: self._polls.CreatePoll(req, metadata=md, timeout=CALL_TIMEOUT_S))
        return poll if isinstance(poll, Response) else _json(200, poll_json(poll))

    async def _get_poll(self, request: Request) -> Response:
        req = polls_pb2.GetPollRequest(poll_id=request.path_params["poll_id"])
        poll = await self._call(request, lambda md: self._polls.GetPoll(req, metadata=md, timeout=CALL_TIMEOUT_S))
        return poll if isinstance(poll, Response) else _json(200, poll_json(poll))

    async def _vote(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            option = body.get("option") if isinstance(body, dict) else None
            if not isinstance(option, int) or isinstance(option, bool) or not 0 <= option < 2**32:
                raise BadRequest('the body must be {"viewer_id": "...", "option": <index>}')
            req = polls_pb2.VoteRequest(
                poll_id=request.path_params["poll_id"], viewer_id=str(body.get("viewer_id", "")), option=option
            )
        except BadRequest as exc:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": str(exc)})
        reply = await self._call(request, lambda md: self._polls.Vote(req, metadata=md, timeout=CALL_TIMEOUT_S))
        return reply if isinstance(reply, Response) else _json(200, {"poll": poll_json(reply.poll)})

    # -- live comments --

    async def _post_comment(self, request: Request) -> Response:
        try:
            req = comment_from_json(request.path_params["stream_id"], await self._body(request))
        except BadRequest as exc:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": str(exc)})
        reply = await self._call(
            request, lambda md: self._comments.PostComment(req, metadata=md, timeout=CALL_TIMEOUT_S)
        )
        if isinstance(reply, Response):
            return reply
        return _json(200, {"comment": comment_json(reply.comment), "duplicate": reply.duplicate})

    async def _comment_history(self, request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", "0"))
        except ValueError:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": "limit is an integer 1..100"})
        if not 0 <= limit < 2**32:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": "limit is an integer 1..100"})
        req = comments_pb2.GetCommentsRequest(
            stream_id=request.path_params["stream_id"],
            before=q.get("before", ""),
            limit=limit,
            viewer_id=q.get("viewer_id", ""),
        )
        reply = await self._call(
            request, lambda md: self._comments.GetComments(req, metadata=md, timeout=CALL_TIMEOUT_S)
        )
        if isinstance(reply, Response):
            return reply
        return _json(
            200,
            {
                "comments": [comment_json(c) for c in reply.comments],
                "next_before": reply.next_before,
                "pinned": pinned_json(reply.pinned),
            },
        )

    async def _like(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            viewer = body.get("viewer_id", "") if isinstance(body, dict) else None
            if not isinstance(viewer, str):
                raise BadRequest('the body must be {"viewer_id": "..."}')
        except BadRequest as exc:
            return _json(400, {"error": "INVALID_ARGUMENT", "detail": str(exc)})
        req = comments_pb2.LikeCommentRequest(
            stream_id=request.path_params["stream_id"],
            comment_id=request.path_params["comment_id"],
            viewer_id=viewer,
        )
        reply = await self._call(
            request, lambda md: self._comments.LikeComment(req, metadata=md, timeout=CALL_TIMEOUT_S)
        )
        return reply if isinstance(reply, Response) else _json(200, {"likes": reply.likes})

    async def _delete_comment(self, request: Request) -> Response:
        req = comments_pb2.DeleteCommentRequest(
            stream_id=request.path_params["stream_id"], comment_id=request.path_params["comment_id"]
        )
        reply = await self._call(
            request, lambda md: self._comments.DeleteComment(req, metadata=md, timeout=CALL_TIMEOUT_S)
        )
        return reply if isinstance(reply, Response) else _json(200, {"deleted": req.comment_id})

    async def _pin(self, request: Request) -> Response:
        comment_id = ""
        if request.method == "PUT":
            try:
                body = await self._body(request)
                value = body.get("comment_id") if isinstance(body, dict) else None
                if not isinstance(value, str) or not value:
                    raise BadRequest('the body must be {"comment_id": "..."}')
                comment_id = value
            except BadRequest as exc:
                return _json(400, {"error": "INVALID_ARGUMENT", "detail": str(exc)})
        req = comments_pb2.PinCommentRequest(stream_id=request.path_params["stream_id"], comment_id=comment_id)
        reply = await self._call(
            request, lambda md: self._comments.PinComment(req, metadata=md, timeout=CALL_TIMEOUT_S)
        )
        return reply if isinstance(reply, Response) else _json(200, {"pinned": pinned_json(reply.pinned)})

    # -- WebSocket --

    def _socket_principal(self, ws: WebSocket) -> tuple[Principal | None, str | None]:
        """The socket's principal and the subprotocol to accept; raises ServiceError (UNAUTHENTICATED, ...)."""
        token = ws.query_params.get("access_token")
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        for p in offered:
            if p.startswith(_BEARER_PROTOCOL):
                token = p[len(_BEARER_PROTOCOL) :]
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        return self.authorizer.check(metadata, Action.SUBSCRIBE), subprotocol

    async def _refuse(self, ws: WebSocket, status: int, detail: str, subprotocol: str | None = None) -> None:
        await ws.accept(subprotocol)
        await ws.send_text(json.dumps({"type": "error", "status": status, "detail": detail}))
        await ws.close(4000 + status)

    async def _stream_socket(self, ws: WebSocket) -> None:
        stream_id = ws.path_params["stream_id"]
        try:
            principal, subprotocol = self._socket_principal(ws)
        except ServiceError as err:
            await self._refuse(ws, HTTP_STATUS.get(err.code, 400), err.message)
            return
        if not is_stream_id(stream_id):
            await self._refuse(ws, 400, "stream id must be 1..128 chars of [A-Za-z0-9._:-]", subprotocol)
            return
        await ws.accept(subprotocol)
        queue = self.hub.join(stream_id)
        reader = asyncio.create_task(self._until_disconnect(ws))
        try:
            while not reader.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait((getter, reader), return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                text = getter.result()
                if text is None:
                    # The upstream ended (a drained stream) or the gateway is stopping: 1012 asks to reconnect.
                    await ws.close(1012 if self._closing else 1000)
                    break
                expired = self.authorizer.still_valid(principal)
                if expired is not None:
                    await ws.send_text(json.dumps({"type": "error", "status": 401, "detail": expired.message}))
                    await ws.close(4401)
                    break
                await ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            reader.cancel()
            self.hub.leave(queue)

    @staticmethod
    async def _until_disconnect(ws: WebSocket) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return

    # -- lifecycle --

    async def start(self) -> str:
        """Listen on ``config.listen`` and serve; returns the bound "host:port". OSError if it cannot bind."""
        host, _, port = self.config.listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            sock.close()
            raise
        sock.listen(1024)
        sock.setblocking(False)
        bound = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            ws="websockets-sansio",
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws_ping_interval=20.0,
            ws_per_message_deflate=self.config.websocket_deflate,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="gateway-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"gateway could not serve on {self.config.listen}")
            await asyncio.sleep(0.01)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.address = f"{shown}:{bound}"
        return self.address

    async def close(self, grace: float = 2.0) -> None:
        """Close every socket (code 1012: reconnect later), stop the server, then the upstreams and channels."""
        self._closing = True
        await self.hub.close()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._server.force_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._task, 1.0)
        await self._edge_channel.close()
        await self._bcast_channel.close()

    def statistics(self) -> dict[str, Any]:
        return {"address": self.address, **self.hub.statistics()}
