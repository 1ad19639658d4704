"""Verification keys for tokens, read from a file and reloaded when it changes.

Two file forms: a *key file* (an HS256 shared secret, or a PEM public key, RSA for RS256 or EC P-256 for ES256; a
PEM private key is accepted and its public half used, which suits development) and a *JWKS file* (RFC 7517, a JSON
``{"keys": [...]}``), whose keys are chosen by the token header's ``kid``. Each key verifies exactly one algorithm,
fixed by its type (never by the token), so an RS256 public key can never be used as an HS256 secret.

Reloading: the file's identity (inode, size, mtime) is checked at most every ``reload_interval_s`` of the clock's
monotonic time, and at once when a token names a ``kid`` the current set lacks, so a JWKS rotated by rewriting
the file (or by a Kubernetes Secret update, which swaps a symlink) takes effect on the next call that needs the
new key. A file that cannot be read or parsed leaves the previous keys in place (logged); with no previous keys
(at start) it is a ConfigError.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from reactmesh.edge.tokens import MIN_SECRET_BYTES
from reactmesh.merge.clock import Clock
from reactmesh.merge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One key and the one algorithm it verifies."""

    key: Any
    algorithm: str


class UnknownKeyError(LookupError):
    """Raised by ``KeySource.find`` when no key fits the token's ``kid`` (or a JWKS token has none)."""


def parse_key_file(data: bytes, where: str) -> VerificationKey:
    """A key file's key; raises ValueError naming ``where`` for anything else."""
    if b"-----BEGIN" in data:
        key: Any
        if b"PRIVATE KEY" in data:
            key = load_pem_private_key(data, password=None).public_key()
        else:
            key = load_pem_public_key(data)
        if isinstance(key, rsa.RSAPublicKey):
            return VerificationKey(key, "RS256")
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return VerificationKey(key, "ES256")
        raise ValueError(f"{where}: expected an RSA or EC P-256 key, got {type(key).__name__}")
    secret = data.rstrip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{where}: an HS256 secret needs at least {MIN_SECRET_BYTES} bytes")
    return VerificationKey(secret, "HS256")


def parse_jwks(data: bytes, where: str) -> dict[str | None, VerificationKey]:
    """A JWKS file's keys by ``kid`` (None for a key without one); raises ValueError naming ``where``."""
    try:
        document = json.loads(data)
        jwk_set = jwt.PyJWKSet.from_dict(document)
    except (ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"{where}: not a usable JWKS ({exc})") from exc
    keys: dict[str | None, VerificationKey] = {}
    for jwk in jwk_set.keys:
        if jwk.algorithm_name not in ("HS256", "RS256", "ES256"):
            raise ValueError(f"{where}: key {jwk.key_id!r} has algorithm {jwk.algorithm_name}, not HS256/RS256/ES256")
        if jwk.public_key_use not in (None, "sig"):
            continue
        keys[jwk.key_id] = VerificationKey(jwk.key, jwk.algorithm_name)
    if not keys:
        raise ValueError(f"{where}: no signing keys")
    return keys


class KeySource:
    """The verification keys of one file (``jwks`` says which form), reloaded when the file changes."""

    __slots__ = ("_checked_at", "_clock", "_field", "_identity", "_interval_s", "_jwks", "_keys", "path", "reloads")

    def __init__(self, path: str, *, jwks: bool, clock: Clock, reload_interval_s: float, field: str) -> None:
        self.path = path
        self._jwks = jwks
        self._clock = clock
        self._interval_s = reload_interval_s
        self._field = field
        self._identity: tuple[int, int, int] | None = None
        self._keys: dict[str | None, VerificationKey] = {}
        self.reloads = 0
        self._checked_at = clock.monotonic()
        try:
            self._load()
        except (OSError, ValueError) as exc:
            raise ConfigError(field, "a readable key file" if not jwks else "a readable JWKS file", str(exc)) from None

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(self._keys)

    def find(self, kid: str | None) -> VerificationKey:
        """The key for a token whose header names ``kid``; raises UnknownKeyError."""
        if self._clock.monotonic() - self._checked_at >= self._interval_s:
            self.refresh()
        if not self._jwks:
            return self._keys[None]
        key = self._lookup(kid)
        if key is None:
            self.refresh()
            key = self._lookup(kid)
        if key is None:
            raise UnknownKeyError("token has no 'kid' header" if kid is None else f"unknown key id {kid!r}")
        return key

    def _lookup(self, kid: str | None) -> VerificationKey | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def refresh(self) -> bool:
        """Reload the file if it changed; True when new keys were loaded. Never raises for a bad file."""
        self._checked_at = self._clock.monotonic()
        try:
            st = os.stat(self.path)
        except OSError as exc:
            log.warning("%s: cannot stat %s, keeping the loaded keys: %s", self._field, self.path, exc)
            return False
        if (st.st_ino, st.st_size, st.st_mtime_ns) == self._identity:
            return False
        try:
            self._load()
        except (OSError, ValueError) as exc:
            log.warning("%s: cannot reload %s, keeping the loaded keys: %s", self._field, self.path, exc)
            return False
        self.reloads += 1
        log.info("%s: reloaded %s (key ids: %s)", self._field, self.path, sorted(map(str, self._keys)))
        return True

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
        keys: dict[str | None, VerificationKey]
        keys = parse_jwks(data, self.path) if self._jwks else {None: parse_key_file(data, self.path)}
        self._keys = keys
        self._identity = (st.st_ino, st.st_size, st.st_mtime_ns)
