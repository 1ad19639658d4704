"""edge.errors: every constructor carries the status its docstring names, and retry hints only where given."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from reactmesh.edge import errors
from reactmesh.edge.errors import ServiceError

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (errors.invalid_argument, Code.INVALID_ARGUMENT),
        (errors.resource_exhausted, Code.RESOURCE_EXHAUSTED),
        (errors.unauthenticated, Code.UNAUTHENTICATED),
        (errors.permission_denied, Code.PERMISSION_DENIED),
        (errors.not_found, Code.NOT_FOUND),
        (errors.failed_precondition, Code.FAILED_PRECONDITION),
        (errors.unavailable, Code.UNAVAILABLE),
        (errors.deadline_exceeded, Code.DEADLINE_EXCEEDED),
        (errors.internal, Code.INTERNAL),
    ],
)
def test_each_constructor_carries_its_status_and_no_retry_hint(make: Callable[[str], ServiceError], code: Code) -> None:
    error = make("why")
    assert (error.code, error.message, error.retry_after_ms) == (code, "why", None)
    assert str(error) == f"{code.name}: why"
    assert make.__doc__


def test_overload_and_unavailable_carry_retry_after_when_given() -> None:
    assert errors.resource_exhausted("busy", 500).retry_after_ms == 500
    assert errors.unavailable("down", retry_after_ms=1000).retry_after_ms == 1000


class _Context:
    def __init__(self) -> None:
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.aborted: tuple[Code, str] | None = None

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    async def abort(self, code: Code, message: str) -> None:
        self.aborted = (code, message)


async def test_abort_with_sends_retry_after_as_trailing_metadata_only_when_set() -> None:
    ctx = _Context()
    await errors.abort_with(ctx, errors.unavailable("draining", retry_after_ms=250))  # type: ignore[arg-type]
    assert ctx.aborted == (Code.UNAVAILABLE, "draining")
    assert ctx.trailing == ((errors.RETRY_AFTER_KEY, "250"),)
    ctx = _Context()
    await errors.abort_with(ctx, errors.permission_denied("not yours"))  # type: ignore[arg-type]
    assert ctx.aborted == (Code.PERMISSION_DENIED, "not yours")
    assert ctx.trailing == ()
