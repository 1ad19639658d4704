"""Token verification and the role policy (edge.auth, edge.keys), against a FakeClock."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from base64 import urlsafe_b64encode
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from reactmesh.edge.auth import POLICY, Action, AuthConfig, Authorizer, Principal, bearer_token
from reactmesh.edge.errors import ServiceError
from reactmesh.edge.tokens import Role, signing_key
from reactmesh.merge.clock import FakeClock, SystemClock
from reactmesh.merge.errors import ConfigError
from tests.support.auth import SECRET, Keys


@pytest.fixture
def keys(tmp_path: Path, clock: FakeClock) -> Keys:
    return Keys(tmp_path, clock)


def authorizer(clock: FakeClock, **config: object) -> Authorizer:
    return Authorizer(AuthConfig(enabled=True, **config), clock)  # type: ignore[arg-type]


def unauthenticated(auth: Authorizer, token: str) -> str:
    with pytest.raises(ServiceError) as info:
        auth.verify(token)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    return info.value.message


def denied(auth: Authorizer, principal: Principal, action: Action, **on: str) -> str:
    with pytest.raises(ServiceError) as info:
        auth.authorize(principal, action, **on)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    return info.value.message


def test_hs256_rs256_and_es256_tokens_verify_to_their_subject_role_and_streams(keys: Keys, clock: FakeClock) -> None:
    hs = authorizer(clock, key_file=str(keys.secret_file))
    principal = hs.verify(keys.token("host-1", ["host"], ["final"]))
    assert principal == Principal("host-1", Role.HOST, frozenset({"final"}), (clock.wall_ms() // 1000 + 3600) * 1000)
    # A PEM private key file verifies with its public half, and only with the algorithm of its type.
    for path, key, alg in ((keys.rsa_file, keys.rsa, "RS256"), (keys.ec_file, keys.ec, "ES256")):
        auth = authorizer(clock, key_file=str(path))
        assert auth.verify(keys.token("v", key=key, algorithm=alg)).subject == "v"
        assert signing_key(path)[1] == alg
        assert "algorithm" in unauthenticated(auth, keys.token("v"))  # HS256 against an asymmetric key


def test_an_hs256_token_signed_with_the_public_key_is_refused(keys: Keys, clock: FakeClock) -> None:
    public = keys.rsa.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    path = keys.root / "rsa.pub"
    path.write_bytes(public)
    auth = authorizer(clock, key_file=str(path))

    def b64(data: bytes) -> str:
        return urlsafe_b64encode(data).rstrip(b"=").decode()

    now = clock.wall_ms() // 1000
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "x", "aud": "reactmesh", "iss": "reactmesh", "exp": now + 60}).encode())
    signature = b64(hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest())
    assert "algorithm" in unauthenticated(auth, f"{head}.{body}.{signature}")


def test_bad_tokens_are_unauthenticated_with_a_reason(keys: Keys, clock: FakeClock) -> None:
    auth = authorizer(clock, key_file=str(keys.secret_file), leeway_s=30)
    assert "signature" in unauthenticated(auth, keys.token(key="another-secret-of-at-least-32-bytes-xyz"))
    assert "malformed" in unauthenticated(auth, "not.a.jwt")
    assert "malformed" in unauthenticated(auth, "garbage")
    assert "audience" in unauthenticated(auth, keys.token(claims={"aud": "other-app"}))
    assert "issuer" in unauthenticated(auth, keys.token(claims={"iss": "evil"}))
    assert "'exp'" in unauthenticated(auth, keys.token(claims={"exp": None}))
    assert "sub" in unauthenticated(auth, keys.token(claims={"sub": ""}))
    assert "'streams'" in unauthenticated(auth, keys.token(claims={"streams": "final"}))
    tampered = keys.token("ann")
    head, _, sig = tampered.split(".")
    assert "signature" in unauthenticated(auth, f"{head}.{keys.token('bob').split('.')[1]}.{sig}")


def test_expiry_and_not_before_hold_within_the_leeway_only(keys: Keys, clock: FakeClock) -> None:
    auth = authorizer(clock, key_file=str(keys.secret_file), leeway_s=30)
    assert auth.verify(keys.token(ttl_s=60, ago_s=89)).subject == "viewer-1"  # expired 29 s ago: in the leeway
    assert "expired" in unauthenticated(auth, keys.token(ttl_s=60, ago_s=90))
    future = clock.wall_ms() // 1000 + 29
    assert auth.verify(keys.token(claims={"nbf": future})).subject == "viewer-1"
    assert "nbf" in unauthenticated(auth, keys.token(claims={"nbf": future + 2}))


async def test_a_principal_expires_on_the_servers_clock(keys: Keys, clock: FakeClock) -> None:
    auth = authorizer(clock, key_file=str(keys.secret_file), leeway_s=0)
    principal = auth.verify(keys.token(ttl_s=10))
    assert auth.still_valid(principal) is None
    await clock.advance(10)
    error = auth.still_valid(principal)
    assert error is not None and error.code == grpc.StatusCode.UNAUTHENTICATED


def test_jwks_keys_are_chosen_by_kid_and_an_unknown_kid_is_unauthenticated(keys: Keys, clock: FakeClock) -> None:
    keys.write_jwks({"rsa-1": keys.rsa, "ec-1": keys.ec})
    auth = authorizer(clock, jwks_file=str(keys.jwks_file))
    assert auth.verify(keys.token("a", key=keys.rsa, algorithm="RS256", kid="rsa-1")).subject == "a"
    assert auth.verify(keys.token("b", key=keys.ec, algorithm="ES256", kid="ec-1")).subject == "b"
    assert "unknown key id" in unauthenticated(auth, keys.token(key=keys.rsa, algorithm="RS256", kid="rsa-9"))
    assert "kid" in unauthenticated(auth, keys.token(key=keys.rsa, algorithm="RS256"))
    # A token under another key's kid does not verify.
    assert "algorithm" in unauthenticated(auth, keys.token(key=keys.ec, algorithm="ES256", kid="rsa-1"))
    keys.write_jwks({"ec-1": keys.ec, "ec-2": Keys(keys.root / "..", keys.clock).ec})
    assert "signature" in unauthenticated(auth, keys.token(key=keys.ec, algorithm="ES256", kid="ec-2"))


async def test_a_rewritten_jwks_adds_keys_at_once_and_retires_them_within_the_interval(
    keys: Keys, clock: FakeClock
) -> None:
    keys.write_jwks({"old": keys.rsa})
    auth = authorizer(clock, jwks_file=str(keys.jwks_file), reload_interval_ms=10_000)
    old = keys.token(key=keys.rsa, algorithm="RS256", kid="old")
    new = keys.token(key=keys.ec, algorithm="ES256", kid="new")
    assert auth.verify(old).subject == "viewer-1"
    keys.write_jwks({"old": keys.rsa, "new": keys.ec})  # overlap: both verify
    assert auth.verify(new).subject == "viewer-1"  # an unknown kid re-reads the file at once
    assert auth.verify(old).subject == "viewer-1"
    keys.write_jwks({"new": keys.ec})  # the old key retired: refused from the next check on
    assert auth.verify(old).subject == "viewer-1"
    await clock.advance(10)
    assert "unknown key id 'old'" in unauthenticated(auth, old)
    assert auth.keys is not None and auth.keys.reloads == 2


async def test_a_changed_key_file_is_reloaded_after_the_interval_and_a_broken_one_is_ignored(
    keys: Keys, clock: FakeClock
) -> None:
    auth = authorizer(clock, key_file=str(keys.secret_file), reload_interval_ms=1000)
    first = keys.token()
    rotated = "a-rotated-secret-of-at-least-32-bytes-abc"
    tmp = keys.root / "next.key"
    tmp.write_text(rotated)
    os.replace(tmp, keys.secret_file)
    assert auth.verify(first).subject == "viewer-1"  # not re-checked before the interval
    await clock.advance(1.0)
    assert "signature" in unauthenticated(auth, first)
    assert auth.verify(keys.token(key=rotated)).subject == "viewer-1"
    tmp.write_text("short")  # a bad file: keep the loaded key
    os.replace(tmp, keys.secret_file)
    await clock.advance(1.0)
    assert auth.verify(keys.token(key=rotated)).subject == "viewer-1"


def test_policy_viewers_act_as_themselves_hosts_on_their_streams_moderators_everywhere(clock: FakeClock) -> None:
    auth = Authorizer.disabled(clock)
    exp = 2**40
    viewer = Principal("ann", Role.VIEWER, frozenset(), exp)
    host = Principal("hal", Role.HOST, frozenset({"final"}), exp)
    moderator = Principal("mo", Role.MODERATOR, frozenset(), exp)
    nobody = Principal("x", None, frozenset(), exp)
    for action in (Action.INGEST, Action.SUBSCRIBE, Action.QUERY, Action.READ_POLL, Action.VOTE):
        for p in (viewer, host, moderator):
            auth.authorize(p, action, viewer_id=p.subject)
        assert "no reactmesh role" in denied(auth, nobody, action)
    for action in (Action.INGEST, Action.VOTE):
        for p in (viewer, host, moderator):
            assert "not the token's subject" in denied(auth, p, action, viewer_id="someone-else")
    assert "host role" in denied(auth, viewer, Action.MANAGE_POLL, stream_id="final")
    auth.authorize(host, Action.MANAGE_POLL, stream_id="final")
    assert "does not name stream 'semi'" in denied(auth, host, Action.MANAGE_POLL, stream_id="semi")
    auth.authorize(moderator, Action.MANAGE_POLL, stream_id="semi")
    for p in (viewer, host):
        assert "moderator role" in denied(auth, p, Action.MODERATE)
    auth.authorize(moderator, Action.MODERATE)
    auth.authorize(None, Action.MODERATE)  # auth disabled
    assert set(POLICY) == set(Action)


def test_roles_claim_absent_means_viewer_and_unknown_roles_grant_nothing(keys: Keys, clock: FakeClock) -> None:
    auth = authorizer(clock, key_file=str(keys.secret_file))
    assert auth.verify(keys.token(claims={"roles": None})).role == Role.VIEWER
    assert auth.verify(keys.token(claims={"roles": ["admin"]})).role is None
    assert auth.verify(keys.token(claims={"roles": ["viewer", "moderator"]})).role == Role.MODERATOR
    assert auth.verify(keys.token(claims={"roles": "host viewer"})).role == Role.HOST


def test_authenticate_reads_the_bearer_metadata_and_passes_everyone_when_disabled(keys: Keys, clock: FakeClock) -> None:
    assert Authorizer.disabled(clock).authenticate(()) is None
    auth = authorizer(clock, key_file=str(keys.secret_file))
    with pytest.raises(ServiceError) as info:
        auth.authenticate((("x-other", "1"),))
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED and "missing" in info.value.message
    token = keys.token("ann")
    principal = auth.authenticate((("authorization", f"bearer {token}"),))
    assert principal is not None and principal.subject == "ann"
    assert bearer_token((("authorization", "Basic abc"), ("authorization", "Bearer t"))) == "t"


def test_bad_auth_config_names_the_field(tmp_path: Path, clock: FakeClock) -> None:
    for kwargs, field in (
        ({"enabled": True}, "key_file"),
        ({"enabled": True, "key_file": "a", "jwks_file": "b"}, "key_file"),
        ({"enabled": "yes"}, "enabled"),
        ({"audience": ""}, "audience"),
        ({"issuer": 3}, "issuer"),
        ({"leeway_s": -1}, "leeway_s"),
        ({"key_file": ""}, "key_file"),
    ):
        with pytest.raises(ConfigError) as err:
            AuthConfig(**kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
    short = tmp_path / "short.key"
    short.write_text("too-short")
    for config, field in (
        (AuthConfig(enabled=True, key_file=str(tmp_path / "missing")), "auth.key_file"),
        (AuthConfig(enabled=True, key_file=str(short)), "auth.key_file"),
        (AuthConfig(enabled=True, jwks_file=str(short)), "auth.jwks_file"),
    ):
        with pytest.raises(ConfigError) as err:
            Authorizer(config, clock)
        assert err.value.field == field
    assert SECRET not in str(err.value)


def test_reactmesh_token_mints_what_the_servers_accept(
    keys: Keys, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    from reactmesh.region_node.cli.main import main

    argv = ["token", "--sub", "hal", "--role", "host", "--stream", "final", "--ttl", "60", "--key", str(keys.ec_file)]
    assert main(argv) == 0
    token = capsys.readouterr().out.strip()
    auth = Authorizer(AuthConfig(enabled=True, key_file=str(keys.ec_file)), SystemClock())
    principal = auth.verify(token)
    assert (principal.subject, principal.role, principal.streams) == ("hal", Role.HOST, frozenset({"final"}))
    assert main(["token", "--sub", "x", "--key", str(keys.root / "missing")]) == 2
