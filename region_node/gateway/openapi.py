"""The OpenAPI 3.1 document of the gateway's HTTP API, served at ``/v1/openapi.json``.

Written out by hand (the routes are few and their bodies mirror the protobuf messages of ``protos/``); a test
checks that every route the app serves is in it.
"""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_AUTH_ERRORS = {
    "401": _error("Missing, malformed, forged or expired token (UNAUTHENTICATED)"),
    "403": _error("The token's role or subject does not allow this (PERMISSION_DENIED)"),
    "503": _error("The upstream node is not serving; retry (Retry-After when it says how long)"),
}


def _json_body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _ok(ref: str, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def document(reactions: tuple[str, ...]) -> dict[str, Any]:
    """The document, with the deployment's reaction set as the emoji enum."""
    counts = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
    emoji = {"type": "string", "enum": list(reactions)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reactmesh gateway",
            "version": "v1",
            "description": "Browser access to reactmesh: taps through the region's edge (exactly once per session "
            "and seq), live frames over WebSocket (WS /v1/streams/{stream_id}: JSON text messages of type "
            "'frame', the Subscribe frames of broadcast.proto, and of type 'comments', the CommentFrames of "
            "comments.proto; token as ?access_token= or a 'bearer.<token>' subprotocol next to 'reactmesh.v1'), "
            "totals, history, polls and live comments.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string", "description": "The gRPC status name, e.g. UNAUTHENTICATED"},
                        "detail": {"type": "string"},
                        "retry_after_ms": {"type": "integer"},
                    },
                },
                "Batch": {
                    "type": "object",
                    "required": ["session_id", "viewer_id", "seq", "stream_id", "counts"],
                    "properties": {
                        "session_id": {
                            "type": "string",
                            "pattern": "^[0-9a-f]{32}$",
                            "description": "16 random bytes per page load, hex",
                        },
                        "viewer_id": {"type": "string", "description": "The token's sub when tokens are required"},
                        "seq": {
                            "type": "integer",
                            "minimum": 1,
                            "description": "1, 2, 3... per session; resend unacknowledged batches with the same seq",
                        },
                        "stream_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                        "counts": {**counts, "propertyNames": emoji},
                        "client_time_ms": {"type": "integer"},
                    },
                },
                "Ack": {
                    "type": "object",
                    "properties": {
                        "seq": {"type": "integer"},
                        "outcome": {"type": "string", "enum": ["ACCEPTED", "DUPLICATE", "REJECTED", "RETRY"]},
                        "accepted_taps": {"type": "integer"},
                        "rate_limited_taps": {"type": "integer"},
                        "reject_reason": {"type": "string", "description": "BatchAck.RejectReason of ingest.proto"},
                        "detail": {"type": "string"},
                        "retry_after_ms": {"type": "integer"},
                    },
                },
                "Totals": {
                    "type": "object",
                    "properties": {"stream_id": {"type": "string"}, "totals": counts, "as_of_ms": {"type": "integer"}},
                },
                "History": {
                    "type": "object",
                    "properties": {
                        "stream_id": {"type": "string"},
                        "step_s": {"type": "integer"},
                        "series": {
                            "type": "object",
                            "description": "emoji -> [[bucket start_s, count], ...], non-zero buckets ascending",
                            "additionalProperties": {"type": "array", "items": {"type": "array"}},
                        },
                    },
                },
                "NewPoll": {
                    "type": "object",
                    "required": ["stream_id", "question", "options"],
                    "properties": {
                        "stream_id": {"type": "string"},
                        "question": {"type": "string"},
                        "options": {"type": "array", "items": {"type": "string"}},
                        "closes_at_ms": {"type": "integer"},
                    },
                },
                "Poll": {
                    "type": "object",
                    "properties": {
                        "poll_id": {"type": "string"},
                        "stream_id": {"type": "string"},
                        "question": {"type": "string"},
                        "options": {"type": "array", "items": {"type": "string"}},
                        "tallies": {"type": "array", "items": {"type": "integer"}},
                        "state": {"type": "string", "enum": ["open", "closed"]},
                        "created_at_ms": {"type": "integer"},
                        "closes_at_ms": {"type": "integer"},
                        "closed_at_ms": {"type": "integer"},
                    },
                },
                "Vote": {
                    "type": "object",
                    "required": ["viewer_id", "option"],
                    "properties": {"viewer_id": {"type": "string"}, "option": {"type": "integer", "minimum": 0}},
                },
                "VoteResult": {"type": "object", "properties": {"poll": {"$ref": "#/components/schemas/Poll"}}},
                "NewComment": {
                    "type": "object",
                    "required": ["viewer_id", "text"],
                    "properties": {
                        "viewer_id": {"type": "string", "description": "The token's sub when tokens are required"},
                        "text": {"type": "string", "maxLength": 500},
                        "reply_to": {"type": "string", "description": "The comment_id this answers"},
                        "client_key": {
                            "type": "string",
                            "description": "Random per comment; a resend with the same key is stored once",
                        },
                    },
                },
                "Comment": {
                    "type": "object",
                    "properties": {
                        "comment_id": {"type": "string", "description": "HLC-derived: string order is time order"},
                        "stream_id": {"type": "string"},
                        "viewer_id": {"type": "string"},
                        "text": {"type": "string"},
                        "reply_to": {"type": "string"},
                        "created_at_ms": {"type": "integer"},
                        "priority": {"type": "boolean"},
                        "likes": {"type": "integer"},
                    },
                },
                "Posted": {
                    "type": "object",
                    "properties": {
                        "comment": {"$ref": "#/components/schemas/Comment"},
                        "duplicate": {"type": "boolean", "description": "A resend of a stored comment"},
                    },
                },
                "CommentPage": {
                    "type": "object",
                    "properties": {
                        "comments": {"type": "array", "items": {"$ref": "#/components/schemas/Comment"}},
                        "next_before": {"type": "string", "description": "The next page's before; empty: last page"},
                        "pinned": {"oneOf": [{"$ref": "#/components/schemas/Comment"}, {"type": "null"}]},
                    },
                },
                "Like": {"type": "object", "required": ["viewer_id"], "properties": {"viewer_id": {"type": "string"}}},
                "Likes": {"type": "object", "properties": {"likes": {"type": "integer"}}},
                "Pin": {"type": "object", "required": ["comment_id"], "properties": {"comment_id": {"type": "string"}}},
                "Pinned": {
                    "type": "object",
                    "properties": {"pinned": {"oneOf": [{"$ref": "#/components/schemas/Comment"}, {"type": "null"}]}},
                },
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/v1/reactions": {
                "post": {
                    "summary": "Send one batch of taps (Ingest.Send)",
                    "requestBody": _json_body("Batch"),
                    "responses": {
                        "200": _ok("Ack", "ACCEPTED, or DUPLICATE for a resent (session, seq): counted once"),
                        "400": _ok("Ack", "REJECTED with reject_reason, or a body that is not a Batch"),
                        "429": _ok("Ack", "RETRY: resend after the Retry-After header (seconds)"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/v1/streams/{stream_id}/totals": {
                "get": {
                    "summary": "Exact totals (Query.GetTotals)",
                    "parameters": [_path_param("stream_id")],
                    "responses": {"200": _ok("Totals"), "400": _error("Bad stream id"), **_AUTH_ERRORS},
                }
            },
            "/v1/streams/{stream_id}/history": {
                "get": {
                    "summary": "Per-second history in buckets (Query.GetHistory)",
                    "parameters": [
                        _path_param("stream_id"),
                        *(
                            {"name": n, "in": "query", "required": n != "step_s", "schema": {"type": "integer"}}
                            for n in ("start_s", "end_s", "step_s")
                        ),
                        {"name": "emoji", "in": "query", "schema": {"type": "array", "items": emoji}},
                    ],
                    "responses": {"200": _ok("History"), "400": _error("Bad range or stream id"), **_AUTH_ERRORS},
                }
            },
            "/v1/polls": {
                "post": {
                    "summary": "Create a poll (Polls.CreatePoll; a host of the stream or a moderator)",
                    "requestBody": _json_body("NewPoll"),
                    "responses": {"200": _ok("Poll"), "400": _error("Bad poll"), **_AUTH_ERRORS},
                }
            },
            "/v1/polls/{poll_id}": {
                "get": {
                    "summary": "Read a poll (Polls.GetPoll)",
                    "parameters": [_path_param("poll_id")],
                    "responses": {"200": _ok("Poll"), "404": _error("Unknown poll"), **_AUTH_ERRORS},
                }
            },
            "/v1/polls/{poll_id}/votes": {
                "post": {
                    "summary": "Vote, replacing the viewer's earlier vote (Polls.Vote)",
                    "parameters": [_path_param("poll_id")],
                    "requestBody": _json_body("Vote"),
                    "responses": {
                        "200": _ok("VoteResult"),
                        "400": _error("Bad option"),
                        "404": _error("Unknown poll"),
                        "409": _error("The poll is closed"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/v1/streams/{stream_id}/comments": {
                "post": {
                    "summary": "Post a comment (CommentsService.PostComment; resend-safe by client_key)",
                    "parameters": [_path_param("stream_id")],
                    "requestBody": _json_body("NewComment"),
                    "responses": {
                        "200": _ok("Posted"),
                        "400": _error("Empty or too long text, bad stream id or reply_to"),
                        "429": _error("The viewer's comment rate limit: retry after the Retry-After header"),
                        **_AUTH_ERRORS,
                    },
                },
                "get": {
                    "summary": "Comment history, newest first (CommentsService.GetComments)",
                    "parameters": [
                        _path_param("stream_id"),
                        {"name": "before", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                        {"name": "viewer_id", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _ok("CommentPage"), "400": _error("Bad cursor or limit"), **_AUTH_ERRORS},
                },
            },
            "/v1/streams/{stream_id}/comments/{comment_id}/likes": {
                "post": {
                    "summary": "Like a comment, once per viewer (CommentsService.LikeComment)",
                    "parameters": [_path_param("stream_id"), _path_param("comment_id")],
                    "requestBody": _json_body("Like"),
                    "responses": {"200": _ok("Likes"), "404": _error("Unknown comment"), **_AUTH_ERRORS},
                }
            },
            "/v1/streams/{stream_id}/comments/{comment_id}": {
                "delete": {
                    "summary": "Delete a comment (a host of the stream or a moderator; CommentsService.DeleteComment)",
                    "parameters": [_path_param("stream_id"), _path_param("comment_id")],
                    "responses": {"200": {"description": "Deleted"}, "404": _error("Unknown comment"), **_AUTH_ERRORS},
                }
            },
            "/v1/streams/{stream_id}/pin": {
                "put": {
                    "summary": "Pin a comment (a host of the stream or a moderator; CommentsService.PinComment)",
                    "parameters": [_path_param("stream_id")],
                    "requestBody": _json_body("Pin"),
                    "responses": {"200": _ok("Pinned"), "404": _error("Unknown comment"), **_AUTH_ERRORS},
                },
                "delete": {
                    "summary": "Unpin (PinComment with no comment)",
                    "parameters": [_path_param("stream_id")],
                    "responses": {"200": _ok("Pinned"), **_AUTH_ERRORS},
                },
            },
        },
    }
