"""Child processes of a supervisor (``reactmesh up``, the benchmarks, the tests): started safely, ready or failed
at a glance, and never outliving the supervisor.

- ``start_child`` starts a process with ``subprocess.Popen`` without a ``preexec_fn``, so no Python code runs
  between fork and exec: safe while gRPC (or any) threads are alive in the parent. (uvloop's subprocess support
  runs Python's after-fork hooks in the forked child, where ``threading._after_fork`` can spin on locks held by
  the parent's gRPC threads.) ``Child`` is its asyncio-friendly handle.
- A linked child gets one end of a socket pair as ``--supervisor-fd N``. The child (``ParentLink``) writes
  ``ready`` on it once serving, and treats end-of-file as the supervisor's death: it asks for a graceful stop.
  On Linux it also sets the parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``), which fires even when
  the child's event loop is busy. The supervisor (``Child.ready``) learns of readiness, or of a child that
  exited or closed the link before being ready, without polling a port that another process may hold.

The parent-death signal follows the thread that started the child, so start linked children from a thread that
lives as long as they should (the event loop's).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

READY = b"ready\n"
SUPERVISOR_FD_OPTION = "--supervisor-fd"
_PR_SET_PDEATHSIG = 1


class ChildFailed(Exception):
    """Raised by ``Child.ready`` when the child exited, or closed its link, before saying it was ready."""

    def __init__(self, name: str, returncode: int | None, log: Path | None) -> None:
        self.name = name
        self.returncode = returncode
        self.log = log
        status = "is still running" if returncode is None else f"exited with status {returncode}"
        super().__init__(f"{name} {status} before it was ready")

    def log_tail(self, lines: int = 15) -> list[str]:
        """The last ``lines`` lines of the child's log, if it has one."""
        if self.log is None:
            return []
        try:
            return self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


class Child:
    """A started child process: ``pid``, ``returncode`` (None while it runs), ``wait()``, signals, and for linked
    children ``ready()``. Quacks like ``asyncio.subprocess.Process`` where the callers need it to."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        name: str,
        link: socket.socket | None,
        log: Path | None,
        stdout: asyncio.StreamReader | None,
    ) -> None:
        self._popen = popen
        self.name = name
        self.pid = popen.pid
        self.log = log
        self.stdout = stdout
        self._link = link
        self._ready = False

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the child to exit; return its status (negative: killed by that signal)."""
        while (code := self._popen.poll()) is None:
            await self._exit_or_tick()
        self._close_link()
        return code

    async def _exit_or_tick(self) -> None:
        """Return when the child exits (a pidfd becomes readable), or after a short tick where there is none."""
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux 5.3+, or already reaped
            await asyncio.sleep(0.02)
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` unless the child has already exited and been reaped."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def ready(self, within: float) -> None:
        """Wait until a linked child says it is ready.

        Raises ChildFailed when it exits or closes its link first, TimeoutError after ``within`` seconds.
        """
        if self._ready:
            return
        if self._link is None:
            raise RuntimeError(f"{self.name} was started without a link")
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self._link, len(READY)), within)
        except TimeoutError:
            raise TimeoutError(f"{self.name} not ready after {within} s") from None
        except OSError:
            data = b""
        if data != READY:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(), 5.0)  # the status, when it is on its way out
            raise ChildFailed(self.name, self.returncode, self.log)
        self._ready = True

    def _close_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None


async def start_child(
    argv: Sequence[str],
    *,
    name: str,
    linked: bool = False,
    log: Path | None = None,
    stdout: int | IO[Any] | None = None,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> Child:
    """Start ``argv`` (``[sys.executable, "-m", ...]`` or any program) and return its handle.

    ``linked`` appends ``--supervisor-fd N`` (the program must be ``reactmesh serve``). Output goes to the file
    ``log`` (appended; stdout too unless ``stdout`` is given), ``stdout=subprocess.PIPE`` makes ``Child.stdout``
    an asyncio stream. ``new_session`` puts the child in a session of its own, so a terminal's Ctrl-C reaches
    only the supervisor.
    """
    argv = list(argv)
    pass_fds: tuple[int, ...] = ()
    ours = theirs = None
    if linked:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        argv += [SUPERVISOR_FD_OPTION, str(theirs.fileno())]
        pass_fds = (theirs.fileno(),)
    # On the loop's thread, not in an executor: the parent-death signal follows the thread that starts the child.
    handle = open(log, "ab") if log is not None else None  # noqa: SIM115, ASYNC230 - handed to the child, closed below
    try:
        popen = subprocess.Popen(  # noqa: ASYNC220 - fork+exec in C, milliseconds
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else (handle or subprocess.DEVNULL),
            stderr=handle or subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            pass_fds=pass_fds,
            start_new_session=new_session,
        )
    except BaseException:
        for s in (ours, theirs):
            if s is not None:
                s.close()
        raise
    finally:
        if handle is not None:
            handle.close()
    if theirs is not None:
        theirs.close()
    reader = None
    if stdout == subprocess.PIPE and popen.stdout is not None:
        reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        protocol = asyncio.StreamReaderProtocol(reader)
        await asyncio.get_running_loop().connect_read_pipe(lambda: protocol, popen.stdout)
    return Child(popen, name, ours, log, reader)


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent (thread) dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class ParentLink:
    """The child's end of its supervisor's link (``--supervisor-fd``): ``ready()`` once serving, and
    ``on_parent_exit`` is called (on the event loop) when the supervisor dies or closes its end."""

    def __init__(self, fd: int, on_parent_exit: Callable[[], None]) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(False)
        self._on_exit = on_parent_exit
        self._loop = asyncio.get_running_loop()
        set_parent_death_signal(signal.SIGTERM)
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data = self._sock.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # end of file: the supervisor is gone
            self._loop.remove_reader(self._sock.fileno())
            self._on_exit()

    def ready(self) -> None:
        """Tell the supervisor this process is serving."""
        with contextlib.suppress(OSError):
            self._sock.send(READY)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
