"""Log output of a reactmesh process: text for people, or JSON (one object per line) for a log pipeline.

``configure(level, fmt)`` sets up the root logger once, at start. ``set_context(region=..., role=..., node=...)``
adds fields every later line carries (``serve`` sets them from its config), in both formats. A JSON line holds
``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``msg``, the context fields, and ``exc`` (the
formatted traceback) when there is one; keys are always present in that order, values are strings.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")

_context: dict[str, str] = {}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.reactmesh = dict(_context)
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        out: dict[str, str] = {
            "ts": ts,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "reactmesh", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [region/role]: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ctx = getattr(record, "reactmesh", {})
        record.where = f" [{'/'.join(ctx[k] for k in ('region', 'role') if k in ctx)}]" if ctx else ""
        return super().format(record)


def configure(level: str, fmt: LogFormat = "text") -> None:
    """Send every record at ``level`` and above to stderr in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def set_context(**fields: str) -> None:
    """Fields every later record carries (empty values are left out)."""
    _context.update({k: v for k, v in fields.items() if v})
