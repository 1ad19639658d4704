"""Bearer tokens: round trip, expiry, forgery and tampering, metadata parsing."""

from __future__ import annotations

import base64
import json

import grpc
import pytest

from reactmesh.edge.auth import Authenticator, bearer_token, issue_token, verify_token
from reactmesh.edge.errors import ServiceError
from reactmesh.merge.clock import FakeClock

SECRET = "0123456789abcdef-test-secret"
NOW = 1_700_000_000_000


def test_issued_token_verifies_to_its_viewer_until_expiry() -> None:
    token = issue_token(SECRET, "viewer-42", ttl_s=60, now_ms=NOW)
    principal = verify_token(SECRET, token, NOW + 59_999)
    assert principal.viewer_id == "viewer-42"
    assert principal.expires_at_ms == NOW + 60_000


def expect_unauthenticated(secret: str, token: str, now_ms: int = NOW) -> str:
    with pytest.raises(ServiceError) as info:
        verify_token(secret, token, now_ms)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    return info.value.message


def test_expired_token_is_unauthenticated() -> None:
    token = issue_token(SECRET, "v", ttl_s=60, now_ms=NOW)
    assert "expired" in expect_unauthenticated(SECRET, token, NOW + 60_000)


def test_token_signed_with_another_secret_is_unauthenticated() -> None:
    token = issue_token("another-secret-of-16+", "v", ttl_s=60, now_ms=NOW)
    assert "signature" in expect_unauthenticated(SECRET, token)


def test_tampered_subject_is_unauthenticated() -> None:
    token = issue_token(SECRET, "alice", ttl_s=60, now_ms=NOW)
    prefix, _payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "bob", "exp": NOW + 60_000}).encode()).rstrip(b"=")
    assert "signature" in expect_unauthenticated(SECRET, f"{prefix}.{forged.decode()}.{signature}")


@pytest.mark.parametrize("token", ["", "garbage", "v1.", "v1..", "v1.abc", "v1.abc.!!!", "v2.a.b", "v1." + "a" * 5000])
def test_malformed_tokens_are_unauthenticated(token: str) -> None:
    expect_unauthenticated(SECRET, token)


def test_bearer_token_is_read_from_authorization_metadata() -> None:
    assert bearer_token((("x-other", "1"), ("authorization", "Bearer abc.def"))) == "abc.def"
    assert bearer_token((("authorization", "bearer  abc"),)) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) is None
    assert bearer_token(()) is None
    assert bearer_token(None) is None


async def test_authenticator_requires_a_token_only_when_a_secret_is_set() -> None:
    clock = FakeClock(start_wall_ms=NOW)
    assert Authenticator(None, clock).authenticate(()) is None
    auth = Authenticator(SECRET, clock)
    with pytest.raises(ServiceError) as info:
        auth.authenticate(())
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    token = issue_token(SECRET, "v", ttl_s=1, now_ms=NOW)
    principal = auth.authenticate((("authorization", f"Bearer {token}"),))
    assert principal is not None and principal.viewer_id == "v"
    assert auth.still_valid(principal) is None
    await clock.advance(1.0)
    assert auth.still_valid(principal) is not None
