"""The processes dagbox starts, and the ones it adopts: nothing a run starts outlives it.

A host step runs in a process group of its own, which dagbox stops when the step ends. A
process that leaves the group (``setsid``, a daemon's double fork) escaped that, and
outlived the run. So ``dagbox run`` and ``dagbox bench`` make their process a child
subreaper (``PR_SET_CHILD_SUBREAPER``, Linux 3.4): every orphaned descendant is re-parented
to dagbox instead of init. Those adopted processes are stopped when their run ends
(a step may start a service for later steps of its run; no process survives the run),
and every adopted process left when the dagbox process is done is stopped too, one that
cleared its environment (``env -i``) included.

dagbox keeps the pids it started and waits for itself (:func:`started`, :func:`ended`),
so that it never signals or reaps one of those: only adopted processes are touched.
A process being started is not registered yet (its pid is known only once the spawn
returns), so every spawn is announced first (:func:`spawning`), and nothing that started
after the oldest spawn still in flight is touched. Adopted processes that exit stay
zombies until dagbox waits for them; :func:`reap` collects them. Children this process
already had when it became a subreaper (``helper & exec dagbox ...``) are never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from dagbox import procfs
from dagbox.owner import ENV_OWNER

_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37
#: Process start times are counted in clock ticks (10 ms): this much slack on either side.
_TICK_SLACK = 0.05

_mine: set[int] = set()
_inherited: set[int] = set()
_in_flight: dict[object, float] = {}
#: reap() (in the event loop) and stop_adopted() (in a worker thread) never run at once:
#: a pid one of them collects could otherwise be reused before the other signals it.
_lock = threading.Lock()


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Around a spawn: until it returns and the pid is registered, nothing younger than its
    start is signalled or collected here."""
    token = object()
    _in_flight[token] = _since_boot()
    try:
        yield
    finally:
        del _in_flight[token]


def started(pid: int) -> None:
    """``pid`` is dagbox's own child, waited for by whoever started it: never touched here."""
    _mine.add(pid)


def ended(pid: int) -> None:
    """``pid`` has been waited for (the pid may be reused from now on)."""
    _mine.discard(pid)


def _since_boot() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _settled(started_at: float) -> bool:
    """Started before every spawn still in flight: so not one of those."""
    oldest = min(_in_flight.values(), default=float("inf"))
    return started_at < oldest - _TICK_SLACK


@cache
def _libc() -> Any:
    import ctypes  # only where a subreaper is wanted: it costs milliseconds to import

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _has_prctl() -> bool:
    libc = _libc()
    return libc is not None and hasattr(libc, "prctl")


def _prctl(option: int, argument: Any) -> bool:
    """``prctl(option, argument)`` succeeded; False where the C library has no prctl."""
    return _has_prctl() and bool(_libc().prctl(option, argument, 0, 0, 0) == 0)


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False where Linux cannot."""
    if not _has_prctl():
        return False
    _inherited.update(_children())
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def is_subreaper() -> bool:
    import ctypes

    flag = ctypes.c_int(0)
    return _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag)) and bool(flag.value)


def _children() -> list[int]:
    """This process's children (of every thread: an orphan goes to any of them)."""
    found: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")  # noqa: PTH208
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children", "rb") as handle:  # noqa: PTH123
                found.extend(int(pid) for pid in handle.read().split())
        except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: every process
            return _children_by_parent()
        except (OSError, ValueError):
            continue
    return found


def _children_by_parent() -> list[int]:
    me = os.getpid()
    found = []
    for name in procfs.pids():
        fields = procfs.stat(name)
        if fields is not None and int(fields[procfs.PARENT]) == me:
            found.append(int(name))
    return found


def adopted() -> list[int]:
    """Children of this process that it did not start (orphans re-parented to it)."""
    return [pid for pid in _children() if pid not in _mine and pid not in _inherited]


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(state, process group, start in seconds since boot) of ``pid``, None if it is gone."""
    fields = procfs.stat(pid)
    if fields is None:
        return None
    started = int(fields[procfs.START]) / os.sysconf("SC_CLK_TCK")
    return fields[procfs.STATE].decode(), int(fields[procfs.GROUP]), started


def _marked(pid: int, run_id: str, owner: str) -> bool:
    """``pid``'s environment names this run and this dagbox process (what every host step
    starts inherits, unless it clears its environment)."""
    environ = procfs.environ(pid)
    if environ is None:
        return False
    return (
        # The run's own, or a child run's (a sub-DAG call: its id is the run's, then ".")
        (
            f"\0DAG_RUN_ID={run_id}\0".encode() in environ
            or f"\0DAG_RUN_ID={run_id}.".encode() in environ
        )
        and f"\0{ENV_OWNER}={owner}\0".encode() in environ
    )


def _wait(pid: int) -> bool:
    """Collect ``pid`` if it has exited; True once it is gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def reap() -> int:
    """Collect adopted zombies (never one a spawn in flight may be); how many."""
    if not _lock.acquire(blocking=False):
        return 0  # stop_adopted() is at it
    try:
        collected = 0
        for pid in adopted():
            stat = _stat(pid)
            if stat is not None and stat[0] == "Z" and _settled(stat[2]) and _wait(pid):
                collected += 1
        return collected
    finally:
        _lock.release()


def stop_adopted(belongs: Callable[[int], bool] | None = None, bound: float = 5.0) -> list[int]:
    """SIGKILL adopted processes (those ``belongs`` accepts, else all) with their process
    groups, and collect them; again for the processes their deaths hand over to us, until
    none is left or ``bound`` seconds have passed. Returns the pids stopped."""
    stopped: dict[int, None] = {}
    own_group = os.getpgrp()
    deadline = time.monotonic() + bound
    with _lock:
        while time.monotonic() < deadline:
            found = []
            for pid in adopted():
                stat = _stat(pid)
                if stat is None or not _settled(stat[2]):
                    continue
                state, group, _ = stat
                if state == "Z":
                    _wait(pid)
                    continue
                if belongs is not None and not belongs(pid):
                    continue
                found.append(pid)
                with contextlib.suppress(OSError):
                    if group not in (own_group, 0, 1):
                        os.killpg(group, signal.SIGKILL)
                    os.kill(pid, signal.SIGKILL)
            if not found:
                break
            stopped.update(dict.fromkeys(found))
            pending = set(found)
            while pending and time.monotonic() < deadline:
                pending = {pid for pid in pending if not _wait(pid)}
                if pending:
                    time.sleep(0.005)
    return list(stopped)


def stop_run_leftovers(run_id: str, owner: str) -> list[int]:
    """Stop what a finished run left behind: adopted processes whose environment names it.

    Where this process is not a subreaper (dagbox used as a library), such a process was
    re-parented to init instead; it is found among every process of the machine.
    """
    if is_subreaper():
        return stop_adopted(lambda pid: _marked(pid, run_id, owner))
    return _stop_marked_anywhere(run_id, owner)


def _stop_marked_anywhere(run_id: str, owner: str) -> list[int]:
    me = os.getpid()
    stopped = []
    for name in procfs.pids():
        pid = int(name)
        if pid == me or pid in _mine:
            continue
        try:
            handle = os.pidfd_open(pid)  # holds the process: its pid cannot be reused
        except OSError:
            continue
        try:
            stat = _stat(pid)
            if stat is None or stat[0] == "Z" or not _settled(stat[2]):
                continue
            if not _marked(pid, run_id, owner):
                continue
            with contextlib.suppress(OSError):
                if stat[1] == pid:  # it leads its own group (setsid): the whole group
                    os.killpg(pid, signal.SIGKILL)
                signal.pidfd_send_signal(handle, signal.SIGKILL)
                stopped.append(pid)
        finally:
            os.close(handle)
    return stopped


__all__ = [
    "adopted",
    "become_subreaper",
    "ended",
    "is_subreaper",
    "reap",
    "started",
    "stop_adopted",
    "stop_run_leftovers",
]
