"""The ``reactmesh`` command line: one parser (``main``) and one module per command.

``main`` (parser and dispatch), ``serve`` (run roles in this process), ``up`` (simulated regions on loopback),
``demo`` (the live table of ``up --demo``), ``load`` (simulated viewers through the SDK), ``watch`` (live counts of
a stream), ``poll`` (live polls), ``export`` (history as Parquet), ``bench`` (benchmark scenarios, in a child
interpreter).
"""

from reactmesh.region_node.cli.main import main

__all__ = ["main"]
