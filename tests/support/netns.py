"""Regions in network namespaces for multi-region fault tests: a hub that routes between them, cuts and heals.

``RegionNetwork`` puts each region in its own network namespace, joined through a hub namespace that routes
between them (one /16 of 10.0.0.0/8 per run, free in the root namespace when it was picked)::

    root ns 10.N.0.2 --veth-- 10.N.0.1 hub ns (ip_forward=1) 10.N.i.1 --veth-- 10.N.i.2 region i (1, 2, ...)

The root namespace routes 10.N.0.0/16 into the hub, so the test process reaches every region's servers.
``cut(region)`` separates the region from the hub: processes inside the region still reach each other (and
clients running in its namespace reach its edge), while nothing crosses between the region and the other regions
or the root namespace. Two ways, both iproute2 only: ``how="drop"`` (default) makes the hub route the region's
packets, both directions, into a blackhole, so they vanish silently as on a broken or firewalled path and TCP
backs off its retransmissions; ``how="link"`` sets the hub's end of the link down, so the hub answers the other
regions with ICMP unreachable, which lets their TCP retransmit sooner (RFC 6069). ``heal(region)`` undoes the
cut; connections that were open resume through TCP retransmission unless a side gave up on them meanwhile.

Cleanup is complete even when a test fails: ``close()`` kills every process still inside the namespaces and
deletes the namespaces, which removes their veths and routes. Namespace names carry the creating pid, and a
new ``RegionNetwork`` first removes namespaces left behind by a dead pid (a test run that was killed).

The processes that run inside the regions are ``tests.support.regions``; the checks are ``tests.support.totals``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

_PREFIX = "rmx"
_LOCK = Path("/tmp/reactmesh-netns.lock")
_NAME = re.compile(rf"^{_PREFIX}(\d+)-")
_BLACKHOLE_TABLE = 77

CutHow = Literal["drop", "link"]


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can (probed by creating one)."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); running as uid " + str(
            os.geteuid()
        )
    probe = f"{_PREFIX}{os.getpid()}-probe"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"'ip netns add' failed: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_and_delete(ns: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces (and kill their processes) created by test runs whose pid is gone."""
    removed = []
    for ns in _namespaces():
        m = _NAME.match(ns)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            _kill_and_delete(ns)
            subprocess.run(["ip", "link", "del", f"{_PREFIX}{m.group(1)}"], capture_output=True, check=False)
            removed.append(ns)
        except PermissionError:
            pass
    return removed


@dataclass
class RegionNetwork:
    """Namespaces and links for ``regions``. Use as ``with RegionNetwork(("a", "b", "c")) as net``.

    One at a time per process: names are derived from the pid.
    """

    regions: Sequence[str]
    hub: str = ""
    octet: int = 0
    namespaces: dict[str, str] = field(default_factory=dict)
    cuts: dict[str, CutHow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.regions:
            if not re.fullmatch(r"[a-z0-9]{1,8}", r):
                raise ValueError(f"region names must be 1..8 chars of [a-z0-9] (interface names), got {r!r}")

    def __enter__(self) -> RegionNetwork:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, region: str) -> str:
        """The region's IP address, on which its servers listen."""
        return f"10.{self.octet}.{self.regions.index(region) + 1}.2"

    def exec_prefix(self, region: str) -> list[str]:
        """Prepend to a command to run it inside the region's namespace."""
        return ["ip", "netns", "exec", self.namespaces[region]]

    def cut(self, region: str, how: CutHow = "drop") -> None:
        """Separate ``region`` from the hub: "drop" discards its packets silently, "link" sets its link down."""
        if region in self.cuts:
            raise ValueError(f"region {region} is already cut ({self.cuts[region]})")
        i = self.regions.index(region) + 1
        if how == "drop":
            _ip("-n", self.hub, "route", "replace", "blackhole", "default", "table", str(_BLACKHOLE_TABLE))
            for direction, pref in (("to", 1000 + i), ("from", 2000 + i)):
                _ip(
                    "-n",
                    self.hub,
                    "rule",
                    "add",
                    direction,
                    f"10.{self.octet}.{i}.0/24",
                    "table",
                    str(_BLACKHOLE_TABLE),
                    "pref",
                    str(pref),
                )
        elif how == "link":
            _ip("-n", self.hub, "link", "set", f"r-{region}", "down")
        else:
            raise ValueError(f"how must be 'drop' or 'link', got {how!r}")
        self.cuts[region] = how

    def heal(self, region: str) -> None:
        how = self.cuts.pop(region)
        i = self.regions.index(region) + 1
        if how == "drop":
            for pref in (1000 + i, 2000 + i):
                _ip("-n", self.hub, "rule", "del", "pref", str(pref))
        else:
            _ip("-n", self.hub, "link", "set", f"r-{region}", "up")

    def create(self) -> None:
        remove_stale_namespaces()
        tag = f"{_PREFIX}{os.getpid()}"
        with open(_LOCK, "a") as lock:
            # Held until our route exists, so two runs never pick the same /16.
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.octet = self._free_octet()
            self.hub = f"{tag}-hub"
            _ip("netns", "add", self.hub)
            _ip("-n", self.hub, "link", "set", "lo", "up")
            subprocess.run(
                ["ip", "netns", "exec", self.hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                check=True,
                capture_output=True,
            )
            n = self.octet
            _ip("link", "add", tag, "type", "veth", "peer", "name", "root", "netns", self.hub)
            _ip("addr", "add", f"10.{n}.0.2/24", "dev", tag)
            _ip("link", "set", tag, "up")
            _ip("-n", self.hub, "addr", "add", f"10.{n}.0.1/24", "dev", "root")
            _ip("-n", self.hub, "link", "set", "root", "up")
            _ip("route", "add", f"10.{n}.0.0/16", "via", f"10.{n}.0.1", "dev", tag)
        for i, region in enumerate(self.regions, start=1):
            ns = f"{tag}-{region}"
            _ip("netns", "add", ns)
            self.namespaces[region] = ns
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.hub, "link", "add", f"r-{region}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.hub, "addr", "add", f"10.{n}.{i}.1/24", "dev", f"r-{region}")
            _ip("-n", self.hub, "link", "set", f"r-{region}", "up")
            _ip("-n", ns, "addr", "add", f"10.{n}.{i}.2/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", f"10.{n}.{i}.1")

    def close(self) -> None:
        """Kill what runs inside, delete every namespace of this network (idempotent)."""
        for ns in [*self.namespaces.values(), self.hub]:
            if ns and ns in _namespaces():
                _kill_and_delete(ns)
        # Namespaces are torn down asynchronously by the kernel; deleting our end of the root link now
        # removes its routes before this returns.
        subprocess.run(["ip", "link", "del", f"{_PREFIX}{os.getpid()}"], capture_output=True, check=False)
        self.namespaces.clear()
        self.hub = ""

    @staticmethod
    def _free_octet() -> int:
        routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=True).stdout
        addrs = subprocess.run(["ip", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
        for n in range(77, 250):
            if f"10.{n}." not in routes and f"10.{n}." not in addrs:
                return n
        raise RuntimeError("no free 10.N.0.0/16 for the test network")
