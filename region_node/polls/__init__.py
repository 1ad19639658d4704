"""Live polls on the broadcaster: one vote per viewer globally, replicated as a PollSet CRDT.

``book`` (the poll book: validation, HLC stamping, close rules, group-committed durability), ``store`` (the SQLite
poll file), ``service`` (the Polls servicer).
"""
