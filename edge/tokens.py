"""JSON Web Tokens (RFC 7519) as reactmesh uses them: the claims, the roles, and minting development tokens.

A reactmesh token is a standard signed JWT (HS256, RS256 or ES256, via PyJWT) sent as call metadata
``authorization: Bearer <token>``. Its claims: ``sub`` (the viewer id), ``aud`` and ``iss`` (checked against the
deployment's), ``exp`` (required) and optionally ``nbf`` and ``iat``, ``roles`` (a list of ``viewer``, ``host``,
``moderator``; absent means ``["viewer"]``) and ``streams`` (the stream ids a host may run polls on). A JWKS
deployment picks the verification key by the header's ``kid``.

This module is shared by the servers, the SDK and the CLI; verification is ``edge.auth``'s. ``mint_token`` is for
development and tests: production tokens come from the deployment's identity provider.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from enum import IntEnum
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

DEFAULT_AUDIENCE = "reactmesh"
DEFAULT_ISSUER = "reactmesh"
ROLES_CLAIM = "roles"
STREAMS_CLAIM = "streams"
VERIFIED_CLAIM = "verified"
"""Optional boolean claim: a verified viewer (their live comments take the priority lane)."""
MIN_SECRET_BYTES = 32
"""HS256 secrets shorter than the hash (32 bytes) are refused, as RFC 7518 section 3.2 requires."""


class Role(IntEnum):
    """What a token may do; each role may do everything the lower ones may (see ``edge.auth.POLICY``)."""

    VIEWER = 1
    HOST = 2
    MODERATOR = 3

    @property
    def claim(self) -> str:
        """The role's name in the ``roles`` claim."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Role:
        """The role called ``name`` (``viewer``, ``host``, ``moderator``); raises ValueError otherwise."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; expected one of viewer, host, moderator") from None


def new_dev_secret() -> str:
    """A fresh random HS256 secret (43 url-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def signing_key(path: str | Path) -> tuple[Any, str]:
    """The key and algorithm to sign with from a key file: a PEM private key (RSA: RS256, EC P-256: ES256) or a
    shared secret (the file's bytes without trailing whitespace: HS256). Raises ValueError for anything else."""
    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        key = load_pem_private_key(data, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key, "RS256"
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return key, "ES256"
        raise ValueError(f"{path}: expected an RSA or EC P-256 private key, got {type(key).__name__}")
    secret = data.rstrip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, has {len(secret)}")
    return secret, "HS256"


def mint_token(
    key: Any,
    algorithm: str,
    *,
    sub: str,
    roles: Iterable[Role] = (Role.VIEWER,),
    streams: Iterable[str] = (),
    ttl_s: int = 3600,
    now_s: int,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str = DEFAULT_ISSUER,
    kid: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A signed token for ``sub`` with ``roles`` (and ``streams`` when given), valid from ``now_s`` (Unix seconds)
    for ``ttl_s`` seconds. ``extra`` claims override the computed ones (tests use it to forge bad claims)."""
    if not sub:
        raise ValueError("sub must be non-empty")
    claims: dict[str, Any] = {
        "sub": sub,
        "aud": audience,
        "iss": issuer,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + ttl_s,
        ROLES_CLAIM: [role.claim for role in roles],
    }
    stream_list = list(streams)
    if stream_list:
        claims[STREAMS_CLAIM] = stream_list
    claims.update(extra or {})
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` (empty without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class Minter:
    """Mints development tokens from one key file (``signing_key``) for any subject: ``reactmesh token``, and
    per-viewer tokens for simulated load (``reactmesh load --key``, the demo)."""

    __slots__ = ("_algorithm", "_key", "audience", "issuer", "kid", "ttl_s")

    def __init__(
        self,
        key_file: str | Path,
        *,
        audience: str = DEFAULT_AUDIENCE,
        issuer: str = DEFAULT_ISSUER,
        ttl_s: int = 3600,
        kid: str | None = None,
    ) -> None:
        self._key, self._algorithm = signing_key(key_file)
        self.audience = audience
        self.issuer = issuer
        self.ttl_s = ttl_s
        self.kid = kid

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def mint(self, sub: str, roles: Iterable[Role] = (Role.VIEWER,), streams: Iterable[str] = ()) -> str:
        """A token for ``sub`` valid from now (system clock) for ``ttl_s``."""
        return mint_token(
            self._key,
            self._algorithm,
            sub=sub,
            roles=roles,
            streams=streams,
            ttl_s=self.ttl_s,
            now_s=int(time.time()),
            audience=self.audience,
            issuer=self.issuer,
            kid=self.kid,
        )
