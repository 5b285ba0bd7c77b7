"""Fault injection on the local stack's services: SIGKILL, SIGSTOP/SIGCONT, restart.

Every signal goes to the process group of a service this checkout's stack
started: the pid comes from its own pid file (`telemetry.local.stack`, under
its LOCAL folder), and each service is the leader of its own group, so the
Pub/Sub emulator's JVM behind its launcher script is hit too.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from telemetry.local import stack


def service(name: str) -> stack.Service:
    return next(s for s in stack.SERVICES if s.name == name)


def group(name: str) -> int:
    """The process group of the running service (its leader's pid, from this stack's pid file)."""
    svc = service(name)
    assert svc.pid_file.parent == stack.RUN_DIR, svc.pid_file
    pid = stack._running_pid(svc)
    assert pid is not None, f"{name} is not running (no live pid in {svc.pid_file})"
    assert os.getpgid(pid) == pid, f"{name} ({pid}) does not lead its own process group"
    return pid


def kill(name: str) -> None:
    """SIGKILL the whole service, as a crash or an OOM kill would; returns once it is gone."""
    pgid = group(name)
    os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while stack._group_alive(pgid):
        assert time.monotonic() < deadline, f"{name} survived SIGKILL"
        time.sleep(0.05)
    service(name).pid_file.unlink(missing_ok=True)


def restart(name: str) -> float:
    """Start the service again with the stack's own command (and provisioning); returns the seconds it took."""
    started = time.monotonic()
    stack.start(service(name))
    return time.monotonic() - started


def freeze(name: str) -> None:
    """SIGSTOP the service: its sockets still accept connections (the kernel does that),
    but nothing answers. Pair with `thaw` in a finally (or use `frozen`)."""
    os.killpg(group(name), signal.SIGSTOP)


def thaw(name: str) -> None:
    os.killpg(group(name), signal.SIGCONT)


@contextmanager
def frozen(name: str) -> Iterator[None]:
    """The service is frozen for the block, and continued whatever happens."""
    freeze(name)
    try:
        yield
    finally:
        thaw(name)


@contextmanager
def may_freeze(name: str) -> Iterator[None]:
    """For a block that freezes the service at a moment of its choosing (`freeze`): it is
    continued afterwards whatever happens (SIGCONT to a running service changes nothing)."""
    try:
        yield
    finally:
        thaw(name)


@contextmanager
def killed(name: str) -> Iterator[None]:
    """The service is SIGKILLed (by the block or before it) and restarted after it, whatever happens."""
    try:
        yield
    finally:
        if stack._running_pid(service(name)) is None:
            restart(name)
