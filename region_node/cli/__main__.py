"""``python -m reactmesh.region_node.cli`` is ``reactmesh``."""

import sys

from reactmesh.region_node.cli.main import main

sys.exit(main())
