"""The wire rules every reactmesh component agrees on: id forms, sizes and caps, in one place.

Each rule is a named constant (a size, or a compiled pattern to ``fullmatch``), a ``*_FORM`` string that
error messages quote, and a small ``is_*`` predicate that also rejects non-strings. The values are the ones
the protos state (ingest.proto, aggregator.proto, broadcast.proto, polls.proto, common.proto); a component may
enforce a tighter deployment cap (EdgeConfig.max_count_per_entry), never a looser one. Nothing here raises:
each caller turns a failed check into its own error (a REJECTED ack, INVALID_ARGUMENT, ConfigError,
ValueError), so the SDK, the edge and the region nodes can share these rules without sharing code paths.

Region names are ``[a-z0-9][a-z0-9-]{0,31}``: lowercase letters, digits and '-', 1..32 chars, not starting
with '-'. The edge once accepted the wider ``[A-Za-z0-9._-]{1,64}``, the aggregator and the node config this
narrower form. The narrow one is the rule because a region name is also part of node ids ("a/agg-0"), of
metric labels and of Kubernetes namespace names (``reactmesh-a``, a DNS label), and because every node reads
its region through the node config, which already required it: no deployable config had an edge region
outside it. Every region the repository uses (``a``, ``b``, ``c``, ``local`` in k8s/; ``eu``, ``eu-west``,
``test`` in tests/) matches it.
"""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_MAX_COUNT_PER_ENTRY",
    "EMOJI_FORM",
    "EMOJI_RE",
    "MAX_COUNT_PER_ENTRY",
    "MAX_EMOJI_CHARS",
    "MAX_ENTRIES_PER_BATCH",
    "MAX_ENTRIES_PER_EDGE_BATCH",
    "MAX_OPTIONS",
    "MAX_OPTION_CHARS",
    "MAX_POLL_ID_CHARS",
    "MAX_QUESTION_CHARS",
    "MAX_SEQ",
    "MAX_STREAM_ID_CHARS",
    "MAX_VIEWER_ID_CHARS",
    "MIN_OPTIONS",
    "NODE_NAME_FORM",
    "NODE_NAME_RE",
    "POLL_ID_FORM",
    "POLL_ID_RE",
    "REGION_FORM",
    "REGION_RE",
    "SESSION_ID_BYTES",
    "STREAM_ID_FORM",
    "STREAM_ID_RE",
    "VIEWER_ID_FORM",
    "is_emoji",
    "is_node_name",
    "is_poll_id",
    "is_region",
    "is_stream_id",
    "is_viewer_id",
]

# -- sessions and batches (ingest.proto, aggregator.proto) ------------------------------------------------------

SESSION_ID_BYTES = 16
"""A client session id is exactly this many random bytes."""

MAX_SEQ = 2**63 - 1
"""The largest batch seq an aggregator stores (SQLite INTEGER); a seq is >= 1."""

MAX_VIEWER_ID_CHARS = 128
VIEWER_ID_FORM = f"1..{MAX_VIEWER_ID_CHARS} chars"
"""A viewer id is any string of 1..128 chars (ingest.proto, polls.proto)."""

MAX_ENTRIES_PER_BATCH = 16
"""A ClientBatch holds 1..16 emoji counts (ingest.proto)."""

MAX_ENTRIES_PER_EDGE_BATCH = 4096
"""An EdgeBatch holds at most 4096 forwarded client batches (aggregator.proto)."""

DEFAULT_MAX_COUNT_PER_ENTRY = 1000
"""The per-entry tap cap the edge enforces and the SDK cuts batches to unless configured otherwise."""

MAX_COUNT_PER_ENTRY = 2**32
"""The largest per-entry cap an edge may be configured with."""

# -- names ------------------------------------------------------------------------------------------------------

MAX_STREAM_ID_CHARS = 128
STREAM_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
STREAM_ID_FORM = f"1..{MAX_STREAM_ID_CHARS} chars of [A-Za-z0-9._:-]"
"""A live stream id (ingest.proto, broadcast.proto, query.proto, polls.proto)."""

MAX_EMOJI_CHARS = 32
EMOJI_RE = re.compile(r"[a-z0-9_]{1,32}")
EMOJI_FORM = f"1..{MAX_EMOJI_CHARS} chars of [a-z0-9_]"
"""An emoji (reaction) name (common.proto)."""

REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
REGION_FORM = "1..32 chars of [a-z0-9-], e.g. 'a'"
"""A region name; see the module docstring for why this form."""

NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
NODE_NAME_FORM = "1..63 chars of [A-Za-z0-9._-], not starting with '.', '_' or '-'"
"""The name part of a node id "<region>/<name>", e.g. "agg-0" in "a/agg-0"."""

# -- polls (polls.proto) ----------------------------------------------------------------------------------------

MAX_POLL_ID_CHARS = 64
POLL_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
POLL_ID_FORM = f"1..{MAX_POLL_ID_CHARS} chars of [A-Za-z0-9._:-]"

MAX_QUESTION_CHARS = 280
MIN_OPTIONS = 2
MAX_OPTIONS = 10
MAX_OPTION_CHARS = 80


def is_stream_id(value: object) -> bool:
    """True iff ``value`` is a string of the STREAM_ID_FORM."""
    return isinstance(value, str) and STREAM_ID_RE.fullmatch(value) is not None


def is_emoji(value: object) -> bool:
    """True iff ``value`` is a string of the EMOJI_FORM."""
    return isinstance(value, str) and EMOJI_RE.fullmatch(value) is not None


def is_viewer_id(value: object) -> bool:
    """True iff ``value`` is a string of 1..MAX_VIEWER_ID_CHARS chars."""
    return isinstance(value, str) and 0 < len(value) <= MAX_VIEWER_ID_CHARS


def is_region(value: object) -> bool:
    """True iff ``value`` is a string of the REGION_FORM."""
    return isinstance(value, str) and REGION_RE.fullmatch(value) is not None


def is_node_name(value: object) -> bool:
    """True iff ``value`` is a string of the NODE_NAME_FORM."""
    return isinstance(value, str) and NODE_NAME_RE.fullmatch(value) is not None


def is_poll_id(value: object) -> bool:
    """True iff ``value`` is a string of the POLL_ID_FORM."""
    return isinstance(value, str) and POLL_ID_RE.fullmatch(value) is not None
