"""The SDK's layer rule: importing reactmesh.edge.sdk loads no server module (edge's service, forwarder,
auth, rate limiter, ring, validator or config, nor anything of region_node), only the shared modules."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import subprocess
import sys

import reactmesh.edge.sdk as sdk

SERVER_MODULES = {
    f"reactmesh.edge.{name}" for name in ("service", "forwarder", "auth", "ratelimit", "ring", "validation", "config")
}


def test_importing_the_sdk_loads_no_server_module() -> None:
    code = "import sys, reactmesh.edge.sdk; print('\\n'.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert "reactmesh.edge.sdk.client" in loaded
    assert not loaded & SERVER_MODULES
    assert not [m for m in loaded if m.startswith("reactmesh.region_node")]
    assert not [m for m in loaded if m.startswith("reactmesh.bench")]


def test_the_package_re_exports_the_public_names() -> None:
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    assert {"ReactionClient", "ClientConfig", "ClientError", "LiveView", "subscribe"} <= set(sdk.__all__)
    assert callable(sdk.subscribe)


def test_every_sdk_logger_is_under_the_package_logger_the_demo_quiets() -> None:
    names = [info.name for info in pkgutil.iter_modules(sdk.__path__, prefix="reactmesh.edge.sdk.")]
    loggers = [
        m.log for m in map(importlib.import_module, names) if isinstance(getattr(m, "log", None), logging.Logger)
    ]
    assert {"reactmesh.edge.sdk.client", "reactmesh.edge.sdk.ingest", "reactmesh.edge.sdk.subscription"} <= {
        log.name for log in loggers
    }
    assert all(log.name.startswith("reactmesh.edge.sdk.") for log in loggers)
