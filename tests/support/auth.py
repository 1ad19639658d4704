"""Keys and tokens for auth tests: key files of every kind in a directory, and a minter bound to a clock.

``Keys(tmp_path)`` writes an HS256 secret, an RSA and an EC P-256 private key (PEM), and a JWKS of public keys
(``write_jwks``); ``keys.token(...)`` mints a token at the clock's time (FakeClock or system), so expiry is exact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from reactmesh.edge.tokens import Role, bearer, mint_token, new_dev_secret
from reactmesh.merge.clock import Clock

SECRET = "test-secret-of-at-least-32-bytes-0123456789"


def pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class Keys:
    """Signing keys (in memory and as files under ``root``) and a JWKS file of their public halves."""

    def __init__(self, root: Path, clock: Clock) -> None:
        self.root = root
        self.clock = clock
        self.secret_file = root / "hs.key"
        self.secret_file.write_text(SECRET + "\n")
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_file = root / "rsa.pem"
        self.rsa_file.write_bytes(pem(self.rsa))
        self.ec_file = root / "ec.pem"
        self.ec_file.write_bytes(pem(self.ec))
        self.jwks_file = root / "jwks.json"

    def write_jwks(self, kids: dict[str, Any]) -> None:
        """Replace the JWKS file (atomically, like a Secret update) with the public keys of ``kids``."""
        keys = []
        for kid, private in kids.items():
            if isinstance(private, str):
                jwk = json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(private.encode()))
                jwk["alg"] = "HS256"
            elif isinstance(private, rsa.RSAPrivateKey):
                jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
                jwk["alg"] = "RS256"
            else:
                jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
                jwk["alg"] = "ES256"
            jwk["kid"] = kid
            keys.append(jwk)
        tmp = self.jwks_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": keys}))
        os.replace(tmp, self.jwks_file)

    def token(
        self,
        sub: str = "viewer-1",
        roles: Iterable[str] = ("viewer",),
        streams: Iterable[str] = (),
        *,
        key: Any = SECRET,
        algorithm: str = "HS256",
        ttl_s: int = 3600,
        ago_s: int = 0,
        kid: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A token minted ``ago_s`` seconds before the clock's now; ``claims`` override the computed ones."""
        return mint_token(
            key,
            algorithm,
            sub=sub,
            roles=[Role.parse(r) for r in roles],
            streams=streams,
            ttl_s=ttl_s,
            now_s=self.clock.wall_ms() // 1000 - ago_s,
            kid=kid,
            extra=claims,
        )

    def bearer(self, *args: Any, **kwargs: Any) -> tuple[tuple[str, str], ...]:
        return bearer(self.token(*args, **kwargs))


__all__ = ["SECRET", "Keys", "new_dev_secret"]
