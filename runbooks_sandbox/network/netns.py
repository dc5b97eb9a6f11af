"""Entering a network namespace from one thread (setns(2)), for sockets that must live inside it.

A socket belongs to the network namespace of the thread that created it, for its whole life, and
setns(2) with CLONE_NEWNET switches only the calling thread. So one process in the host's namespace
can hold sockets on both sides: it creates the inside ones on a thread that entered the namespace
once and never leaves it (switching a shared thread back and forth would, after one failed switch
back, leave it creating host sockets on the wrong side), and uses them from any thread, an asyncio
loop included.

Python 3.11 has no ``os.setns`` (3.12 does): libc's setns is called through ctypes.
"""
from __future__ import annotations

import ctypes
import errno
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import NetworkError

__all__ = ["NETNS_RUN_DIR", "CLONE_NEWNET", "NamespaceThread", "enter_namespace", "netns_path",
           "namespace_id", "process_namespace_id", "thread_namespace_ids", "run_in_namespace"]

NETNS_RUN_DIR = Path("/var/run/netns")  # where `ip netns add NAME` pins a namespace (a bind mount)
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def netns_path(name: str) -> Path:
    """The file pinning the named namespace (``ip netns add`` creates it)."""
    return NETNS_RUN_DIR / name


def namespace_id(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) identifying a namespace file: equal ids are the same namespace. None when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def process_namespace_id(pid: int) -> tuple[int, int] | None:
    """The network namespace a process (its main thread) is in; None when it is gone or unreadable."""
    return namespace_id(f"/proc/{pid}/ns/net")


def thread_namespace_ids(pid: int) -> set[tuple[int, int]]:
    """The network namespaces of every thread of ``pid``: a thread that called setns is only seen here."""
    found: set[tuple[int, int]] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        ident = namespace_id(f"/proc/{pid}/task/{tid}/ns/net")
        if ident is not None:
            found.add(ident)
    return found


_libc: ctypes.CDLL | None = None


def enter_namespace(path: str | Path) -> None:
    """Move the calling thread into the network namespace pinned at ``path`` (root only)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "setns"):  # Python 3.12+
            os.setns(fd, CLONE_NEWNET)  # type: ignore[attr-defined]
            return
        global _libc
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)


_STOP = object()


class NamespaceThread:
    """A thread that lives inside one network namespace and runs callables there, one at a time.

    Sockets created by a callable (``socket.socket``, a listener's ``bind``/``listen``) are the
    namespace's; return them and use them from anywhere. ``start`` fails with the reason when the
    namespace cannot be entered (it is gone, or we are not root).
    """

    def __init__(self, path: str | Path, name: str = "netns") -> None:
        self.path = Path(path)
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._entered = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> NamespaceThread:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=f"{self.name}:{self.path.name}", daemon=True)
        self._thread.start()
        self._entered.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            error = self._error
            if isinstance(error, OSError) and error.errno in (errno.EPERM, errno.EACCES):
                raise NetworkError(f"cannot enter network namespace {self.path}: {error.strerror}; "
                                   "entering a namespace (setns) needs root (CAP_SYS_ADMIN)") from error
            raise NetworkError(f"cannot enter network namespace {self.path}: {error}; "
                               "is the cluster network created (ClusterNetwork(state_dir).create())?") from error
        return self

    def _run(self) -> None:
        try:
            enter_namespace(self.path)
        except BaseException as e:  # noqa: BLE001 - handed to start()
            self._error = e
            self._entered.set()
            return
        self._entered.set()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                future.set_exception(e)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` inside the namespace; its result or exception arrives in the future."""
        if self._thread is None:
            raise RuntimeError("NamespaceThread.submit before start()")
        future: Future[T] = Future()
        self._queue.put((fn, args, future))
        return future

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """``fn(*args)`` run inside the namespace, waited for."""
        return self.submit(fn, *args).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (after what was submitted before); its hold on the namespace ends with it."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> NamespaceThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_namespace(path: str | Path, fn: Callable[..., T], *args: Any, timeout: float | None = 30.0) -> T:
    """``fn(*args)`` run once on a fresh thread inside the namespace (a probe, a readiness check)."""
    with NamespaceThread(path, name="netns-call") as thread:
        return thread.call(fn, *args, timeout=timeout)
