"""``reactmesh token``: mint a development token (a signed JWT) from a key file.

    reactmesh token --sub viewer-42 [--role viewer|host|moderator ...] [--stream S ...] [--ttl 3600] [--key FILE]

``--key`` (default $REACTMESH_AUTH_KEY; ``reactmesh up --auth`` prints it) is an HS256 secret or a PEM private
key (RS256 / ES256); ``--aud`` / ``--iss`` must match the servers' ``[auth]`` audience and issuer (default
"reactmesh"); ``--kid`` sets the header's key id for JWKS deployments. The token alone goes to stdout, so
``TOKEN=$(reactmesh token --sub ann)`` works. Production tokens come from the deployment's identity provider.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from reactmesh.edge.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, Minter, Role
from reactmesh.merge.errors import ConfigError


def add_token_command(subparsers: Any) -> None:
    env = os.environ.get
    token = subparsers.add_parser("token", help="mint a development token (JWT) from a key file")
    token.add_argument("--sub", required=True, help="the viewer id the token speaks for")
    token.add_argument(
        "--role", action="append", choices=[r.claim for r in Role], default=None, help="repeatable (default: viewer)"
    )
    token.add_argument("--stream", action="append", default=[], help="a stream a host may run polls on; repeatable")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid (default 3600)")
    token.add_argument("--key", default=env("REACTMESH_AUTH_KEY"), help="key file (default $REACTMESH_AUTH_KEY)")
    token.add_argument("--aud", default=env("REACTMESH_AUTH_AUDIENCE", DEFAULT_AUDIENCE))
    token.add_argument("--iss", default=env("REACTMESH_AUTH_ISSUER", DEFAULT_ISSUER))
    token.add_argument("--kid", default=None, help="key id header (JWKS deployments)")


def minter(args: argparse.Namespace, ttl_s: int = 3600) -> Minter | None:
    """A Minter from ``args.key`` (None without one); raises ConfigError (exit status 2) for an unusable file."""
    if not getattr(args, "key", None):
        return None
    try:
        return Minter(
            args.key,
            audience=getattr(args, "aud", DEFAULT_AUDIENCE),
            issuer=getattr(args, "iss", DEFAULT_ISSUER),
            ttl_s=ttl_s,
            kid=getattr(args, "kid", None),
        )
    except (OSError, ValueError) as exc:
        raise ConfigError("--key", "an HS256 secret (32+ bytes) or a PEM private key file", str(exc)) from None


def run_token(args: argparse.Namespace) -> int:
    if args.ttl <= 0:
        print("reactmesh token: --ttl must be > 0", file=sys.stderr)
        return 2
    mint = minter(args, args.ttl)
    if mint is None:
        print("reactmesh token: no key: pass --key FILE or set REACTMESH_AUTH_KEY", file=sys.stderr)
        return 2
    roles = [Role.parse(r) for r in args.role or ["viewer"]]
    print(mint.mint(args.sub, roles, args.stream))
    return 0
