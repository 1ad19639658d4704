"""What the commands share: ``UserError`` (a mistake the user can fix, one line and an exit status) and the
checks that turn a wrong address or option into one.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence

CONNECT_TIMEOUT_S = 5.0
"""How long ``load`` and ``watch`` wait for an address to accept a connection before saying it is unreachable."""


class UserError(Exception):
    """Raised by a command for a mistake the user can fix (an address nothing answers on, a malformed stream id):
    ``main`` prints ``reactmesh COMMAND: message`` on stderr and exits with ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


async def require_reachable(
    addresses: Sequence[str], what: str, *, any_of: bool = False, within: float = CONNECT_TIMEOUT_S
) -> None:
    """Return once every address (``any_of``: one of them) accepts a gRPC connection; UserError naming those that
    do not within ``within``."""
    import grpc

    async def probe(address: str) -> bool:
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), within)
            except TimeoutError:
                return False
            return True

    reachable = await asyncio.gather(*(probe(a) for a in addresses))
    dead = [a for a, ok in zip(addresses, reachable, strict=True) if not ok]
    if dead and not (any_of and len(dead) < len(addresses)):
        raise UserError(f"cannot reach {what} {', '.join(dead)} within {within:g} s: is it running at that address?")


def number(kind: Callable[[str], float], low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """An argparse ``type``: ``kind(text)`` within [low, high], with an error that names the expected range."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low:g}..{high:g}" if low is not None and high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"expected a value {bounds}, got {text}")
        return value

    return parse


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows an option's default when it has one worth showing (not None, False or empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, "", argparse.SUPPRESS) or action.nargs == 0:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
