"""Authentication and authorization of client calls: standard JWTs, roles, and one policy table.

Every client-facing service (Ingest on the edge; Broadcast, Query and Polls on the broadcaster; Admin later)
calls one ``Authorizer``: ``authenticate`` turns the call's ``authorization: Bearer <token>`` metadata into a
``Principal`` (or refuses it with UNAUTHENTICATED), and ``authorize`` decides an ``Action`` for it from
``POLICY`` (or refuses with PERMISSION_DENIED). Node-to-node services (Forward, Gossip) and health checks take no
tokens; nodes authenticate each other with TLS.

What a token must be (``edge.tokens`` has the claims): signed by a configured key with that key's algorithm,
``aud`` and ``iss`` equal to the configured ones, ``exp`` in the future and ``nbf`` (if present) in the past, both
within ``leeway_s`` and judged by the server's Clock (so tests use a FakeClock), and a non-empty ``sub``. A
missing, malformed, forged, expired or not-yet-valid token, a wrong audience or issuer, or an unknown ``kid`` is
UNAUTHENTICATED. Roles are hierarchical (moderator > host > viewer); the policy:

============  ====================================================================
action        allowed
============  ====================================================================
INGEST        any role, for batches whose viewer_id is the token's ``sub``
SUBSCRIBE     any role
QUERY         any role
READ_POLL     any role
VOTE          any role, as the token's ``sub`` (VoteRequest.viewer_id)
MANAGE_POLL   a host on a stream its ``streams`` claim names; a moderator on any
MODERATE      a moderator
COMMENT       any role, as the token's ``sub`` (PostCommentRequest.viewer_id)
MANAGE_COMM.  (MANAGE_COMMENTS: pin, unpin, delete) as MANAGE_POLL
============  ====================================================================

A token whose ``roles`` name no known role, a viewer_id other than ``sub``, or a role or stream the action does
not allow is PERMISSION_DENIED. With auth disabled ``authenticate`` returns None and every action is allowed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from reactmesh.edge.errors import ServiceError, permission_denied, unauthenticated
from reactmesh.edge.keys import KeySource, UnknownKeyError
from reactmesh.edge.limits import is_viewer_id
from reactmesh.edge.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, ROLES_CLAIM, STREAMS_CLAIM, VERIFIED_CLAIM, Role
from reactmesh.merge.checks import boolean, int_in
from reactmesh.merge.clock import Clock, SystemClock
from reactmesh.merge.errors import ConfigError

__all__ = ["POLICY", "Action", "AuthConfig", "Authorizer", "Principal", "Role", "bearer_token"]

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
_BEARER = "bearer "
_MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class AuthConfig:
    """Token checking of one process (the ``[auth]`` section of a node config).

    ``enabled`` False (the default) serves every call anonymously. Enabled, exactly one of ``key_file`` (an HS256
    secret or a PEM public key) and ``jwks_file`` (a JWKS, keys chosen by ``kid``) holds the verification keys;
    the file is re-read when it changes (checked every ``reload_interval_ms`` and on an unknown ``kid``).
    """

    enabled: bool = False
    key_file: str | None = None
    jwks_file: str | None = None
    audience: str = DEFAULT_AUDIENCE
    issuer: str = DEFAULT_ISSUER
    leeway_s: int = 30
    reload_interval_ms: int = 10_000

    def __post_init__(self) -> None:
        boolean("enabled", self.enabled)
        for name in ("key_file", "jwks_file"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(name, "a file path", value)
        if self.enabled and (self.key_file is None) == (self.jwks_file is None):
            raise ConfigError("key_file", "exactly one of key_file and jwks_file when enabled", None)
        for name in ("audience", "issuer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(name, "a non-empty string", value)
        int_in("leeway_s", self.leeway_s, 0, 300)
        int_in("reload_interval_ms", self.reload_interval_ms, 0, 3_600_000)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for: ``subject`` (the viewer id), its ``role`` (the highest it names), the
    ``streams`` a host may run polls on, its expiry (Unix milliseconds), and whether the identity provider marked
    the viewer ``verified`` (the optional boolean ``verified`` claim)."""

    subject: str
    role: Role | None
    streams: frozenset[str]
    expires_at_ms: int
    verified: bool = False


class Action(enum.Enum):
    """What a client call asks to do; ``POLICY`` says who may."""

    INGEST = "ingest"
    SUBSCRIBE = "subscribe"
    QUERY = "query"
    READ_POLL = "read_poll"
    VOTE = "vote"
    MANAGE_POLL = "manage_poll"
    MODERATE = "moderate"
    COMMENT = "comment"
    MANAGE_COMMENTS = "manage_comments"


@dataclass(frozen=True, slots=True)
class Rule:
    """The lowest role allowed; whether the request must be on the token's own viewer id (``as_self``); whether a
    host must hold the request's stream in its ``streams`` claim (``host_streams``)."""

    role: Role
    as_self: bool = False
    host_streams: bool = False


POLICY: dict[Action, Rule] = {
    Action.INGEST: Rule(Role.VIEWER, as_self=True),
    Action.SUBSCRIBE: Rule(Role.VIEWER),
    Action.QUERY: Rule(Role.VIEWER),
    Action.READ_POLL: Rule(Role.VIEWER),
    Action.VOTE: Rule(Role.VIEWER, as_self=True),
    Action.MANAGE_POLL: Rule(Role.HOST, host_streams=True),
    Action.MODERATE: Rule(Role.MODERATOR),
    Action.COMMENT: Rule(Role.VIEWER, as_self=True),
    Action.MANAGE_COMMENTS: Rule(Role.HOST, host_streams=True),
}


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the first ``authorization: Bearer <token>`` entry of call metadata, if any."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY and isinstance(value, str) and value[: len(_BEARER)].lower() == _BEARER:
            return value[len(_BEARER) :].strip()
    return None


def _role_of(claim: object) -> Role | None:
    """The highest known role a ``roles`` claim names (absent: viewer); unknown names are ignored."""
    if claim is None:
        return Role.VIEWER
    names = claim.split() if isinstance(claim, str) else claim
    if not isinstance(names, list):
        return None
    roles = [Role[n.upper()] for n in names if isinstance(n, str) and n.upper() in Role.__members__]
    return max(roles, default=None)


class Authorizer:
    """Checks client calls against one AuthConfig; disabled, it lets every call through anonymously."""

    __slots__ = ("_clock", "_keys", "config")

    def __init__(self, config: AuthConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._keys: KeySource | None = None
        if config.enabled:
            jwks = config.jwks_file is not None
            path = config.jwks_file if jwks else config.key_file
            assert path is not None
            self._keys = KeySource(
                path,
                jwks=jwks,
                clock=clock,
                reload_interval_s=config.reload_interval_ms / 1000,
                field="auth.jwks_file" if jwks else "auth.key_file",
            )

    @classmethod
    def disabled(cls, clock: Clock | None = None) -> Authorizer:
        """An Authorizer that lets every call through anonymously."""
        return cls(AuthConfig(), clock or SystemClock())

    @property
    def enabled(self) -> bool:
        return self._keys is not None

    @property
    def keys(self) -> KeySource | None:
        return self._keys

    # -- authentication --

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal | None:
        """The caller's principal (None when auth is disabled); raises an UNAUTHENTICATED ServiceError."""
        if self._keys is None:
            return None
        token = bearer_token(metadata)
        if token is None:
            raise unauthenticated("missing 'authorization: Bearer <token>' metadata")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        """The principal of a valid ``token``; raises an UNAUTHENTICATED ServiceError otherwise."""
        keys = self._keys
        if keys is None:
            raise RuntimeError("auth is disabled: no keys to verify with")
        if len(token) > _MAX_TOKEN_CHARS:
            raise unauthenticated("malformed token: too long")
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = keys.find(kid if isinstance(kid, str) else None)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=config.audience,
                issuer=config.issuer,
                # exp and nbf are checked below against the server's Clock, not the system time.
                options={"require": ["exp", "sub"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except UnknownKeyError as exc:
            raise unauthenticated(str(exc)) from None
        except jwt.InvalidSignatureError:
            raise unauthenticated("bad token signature") from None
        except jwt.InvalidAlgorithmError:
            raise unauthenticated("token algorithm does not match its key") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated(f"token audience is not {config.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise unauthenticated(f"token issuer is not {config.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"malformed token: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        now_s = self._clock.wall_ms() / 1000
        leeway = self.config.leeway_s
        exp, nbf, sub = claims.get("exp"), claims.get("nbf"), claims.get("sub")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise unauthenticated("malformed token: 'exp' is not a number")
        if now_s >= exp + leeway:
            raise unauthenticated("token expired")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool):
                raise unauthenticated("malformed token: 'nbf' is not a number")
            if now_s < nbf - leeway:
                raise unauthenticated("token not valid yet (nbf)")
        if not isinstance(sub, str) or not is_viewer_id(sub):
            raise unauthenticated("malformed token: 'sub' is not a viewer id")
        streams = claims.get(STREAMS_CLAIM, [])
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            raise unauthenticated(f"malformed token: {STREAMS_CLAIM!r} is not a list of stream ids")
        verified = claims.get(VERIFIED_CLAIM, False)
        if not isinstance(verified, bool):
            raise unauthenticated(f"malformed token: {VERIFIED_CLAIM!r} is not true or false")
        return Principal(sub, _role_of(claims.get(ROLES_CLAIM)), frozenset(streams), round(exp * 1000), verified)

    def still_valid(self, principal: Principal | None) -> ServiceError | None:
        """An UNAUTHENTICATED error once ``principal``'s token has expired (for long-lived streams)."""
        if principal is not None and self._clock.wall_ms() >= principal.expires_at_ms + self.config.leeway_s * 1000:
            return unauthenticated("token expired")
        return None

    # -- authorization --

    def authorize(
        self,
        principal: Principal | None,
        action: Action,
        *,
        viewer_id: str | None = None,
        stream_id: str | None = None,
    ) -> None:
        """Allow ``action`` for ``principal`` (on ``viewer_id`` / ``stream_id``) per POLICY, or raise a
        PERMISSION_DENIED ServiceError. A None principal (auth disabled) is always allowed."""
        if principal is None:
            return
        rule = POLICY[action]
        role = principal.role
        if role is None:
            raise permission_denied("token names no reactmesh role (viewer, host or moderator)")
        if role < rule.role:
            raise permission_denied(f"{action.value} needs the {rule.role.claim} role; the token is {role.claim}")
        if rule.as_self and viewer_id is not None and viewer_id != principal.subject:
            raise permission_denied(f"viewer_id {viewer_id!r} is not the token's subject {principal.subject!r}")
        if rule.host_streams and role == Role.HOST and (stream_id is None or stream_id not in principal.streams):
            raise permission_denied(f"the host token does not name stream {stream_id!r}")

    def check(
        self,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        action: Action,
        *,
        viewer_id: str | None = None,
        stream_id: str | None = None,
    ) -> Principal | None:
        """``authenticate`` then ``authorize``: the principal, or a ServiceError raised."""
        principal = self.authenticate(metadata)
        self.authorize(principal, action, viewer_id=viewer_id, stream_id=stream_id)
        return principal
