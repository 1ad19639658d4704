"""Optional bearer tokens: HMAC-SHA256 signed, carrying a viewer id and an expiry.

A token is ``v1.<payload>.<signature>``: ``payload`` is unpadded base64url of the JSON object
``{"sub": viewer_id, "exp": expiry_unix_ms}`` and ``signature`` unpadded base64url of
HMAC-SHA256(secret, ``"v1." + payload``). Clients send it as call metadata
``authorization: Bearer <token>``.

Guarantees: a token verifies only under the secret that signed it, unmodified, and before its expiry
(compared in constant time; the edge's wall clock decides expiry). A missing, malformed, forged or
expired token is an UNAUTHENTICATED ServiceError; tying each batch's viewer_id to the token's subject is
the service's job (a mismatch is rejected as BAD_VIEWER_ID).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

from reactmesh.edge.errors import ServiceError, unauthenticated
from reactmesh.edge.limits import MAX_VIEWER_ID_CHARS, VIEWER_ID_FORM
from reactmesh.merge.clock import Clock, SystemClock

AUTHORIZATION_KEY = "authorization"
_PREFIX = "v1."
_BEARER = "bearer "
_MAX_TOKEN_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for, and until when (Unix milliseconds)."""

    viewer_id: str
    expires_at_ms: int


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, signed_part: str) -> bytes:
    return hmac.new(secret.encode(), signed_part.encode("ascii"), hashlib.sha256).digest()


def issue_token(secret: str, viewer_id: str, ttl_s: float, *, now_ms: int | None = None) -> str:
    """A token for ``viewer_id`` valid for ``ttl_s`` seconds from ``now_ms`` (default: the system clock)."""
    if not secret:
        raise ValueError("secret must be non-empty")
    if not 0 < len(viewer_id) <= MAX_VIEWER_ID_CHARS:
        raise ValueError(f"viewer_id must be {VIEWER_ID_FORM}")
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
    issued = SystemClock().wall_ms() if now_ms is None else now_ms
    claims = {"sub": viewer_id, "exp": issued + round(ttl_s * 1000)}
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    signed_part = _PREFIX + payload
    return f"{signed_part}.{_b64encode(_sign(secret, signed_part))}"


def verify_token(secret: str, token: str, now_ms: int) -> Principal:
    """The principal of a valid ``token``; raises an UNAUTHENTICATED ServiceError otherwise."""
    if len(token) > _MAX_TOKEN_CHARS or not token.startswith(_PREFIX):
        raise unauthenticated("malformed token")
    signed_part, dot, signature = token.rpartition(".")
    if not dot or signed_part == _PREFIX.rstrip("."):
        raise unauthenticated("malformed token")
    try:
        given = _b64decode(signature)
        expected = _sign(secret, signed_part)
    except (binascii.Error, ValueError):
        raise unauthenticated("malformed token") from None
    if not hmac.compare_digest(given, expected):
        raise unauthenticated("bad token signature")
    try:
        claims = json.loads(_b64decode(signed_part[len(_PREFIX) :]))
        viewer_id = claims["sub"]
        expires_at_ms = claims["exp"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise unauthenticated("malformed token") from None
    if not isinstance(viewer_id, str) or not isinstance(expires_at_ms, int) or isinstance(expires_at_ms, bool):
        raise unauthenticated("malformed token")
    if now_ms >= expires_at_ms:
        raise unauthenticated("token expired")
    return Principal(viewer_id, expires_at_ms)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the first ``authorization: Bearer <token>`` entry of call metadata, if any."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY and isinstance(value, str) and value[: len(_BEARER)].lower() == _BEARER:
            return value[len(_BEARER) :].strip()
    return None


class Authenticator:
    """Checks calls' metadata against one secret; with no secret every call passes anonymously."""

    __slots__ = ("_clock", "_secret")

    def __init__(self, secret: str | None, clock: Clock) -> None:
        self._secret = secret
        self._clock = clock

    @property
    def required(self) -> bool:
        return self._secret is not None

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal | None:
        """The caller's principal (None when tokens are not required); raises UNAUTHENTICATED ServiceError."""
        if self._secret is None:
            return None
        token = bearer_token(metadata)
        if token is None:
            raise unauthenticated("missing 'authorization: Bearer <token>' metadata")
        return verify_token(self._secret, token, self._clock.wall_ms())

    def still_valid(self, principal: Principal) -> ServiceError | None:
        """An UNAUTHENTICATED error once ``principal``'s token has expired (long-lived streams)."""
        if self._clock.wall_ms() >= principal.expires_at_ms:
            return unauthenticated("token expired")
        return None
