"""Container logs: each container's stdout+stderr, kept as bounded lines, as the kubelet keeps files.

A reader thread per container process copies lines into a :class:`ContainerLog` and, when the
pipe closes (the process exited), reports the exit, which is how the pod runtime learns about
crashes without polling. The previous instance's log is kept for ``kubectl logs --previous``.
"""
from __future__ import annotations

import subprocess
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import IO, Callable, Iterator

__all__ = ["ContainerLog", "follow_process"]

DEFAULT_MAX_LINES = 2000


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ContainerLog:
    """The current and the previous instance's output of one container (thread-safe)."""

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES) -> None:
        self._max = max_lines
        self._current: deque[tuple[float, str]] = deque(maxlen=max_lines)
        self._previous: deque[tuple[float, str]] | None = None
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)
        self._instance = 0  # which instance _current holds (followers stop when it changes)
        self._written = 0  # lines ever appended to the current instance (the deque forgets)
        self._ended = False  # the current instance's output is complete (its process exited)

    def new_instance(self) -> None:
        """A restart: the current log becomes the previous one."""
        with self._lock:
            if self._current:
                self._previous = self._current
            self._current = deque(maxlen=self._max)
            self._instance += 1
            self._written, self._ended = 0, False
            self._grew.notify_all()

    def append(self, line: str) -> None:
        with self._lock:
            self._current.append((time.time(), line.rstrip("\n")))
            self._written += 1
            self._grew.notify_all()

    def end(self) -> None:
        """The current instance's process exited: its output is complete."""
        with self._lock:
            self._ended = True
            self._grew.notify_all()

    def follow(
        self, *, tail: int | None = None, timestamps: bool = False, since_seconds: float | None = None,
        stopped: Callable[[], bool] = lambda: False, tick_s: float = 0.5,
    ) -> Iterator[str]:
        """``kubectl logs -f``: the log so far, then each new line, until this instance ends.

        Ends when the process exits (a restart is a new instance, which a follow does not
        cross, as with the kubelet) or when ``stopped()`` says the reader left (checked every
        ``tick_s`` while no line comes).
        """
        with self._lock:
            instance, seen, lines = self._instance, self._written, list(self._current)
        yield _render(_select(lines, tail, since_seconds), timestamps)
        while True:
            with self._grew:
                while (self._instance == instance and self._written == seen and not self._ended
                       and not stopped()):
                    self._grew.wait(tick_s)
                if self._instance != instance:
                    return
                fresh = min(self._written - seen, len(self._current))
                lines = list(self._current)[len(self._current) - fresh:] if fresh else []
                seen, ended = self._written, self._ended
            if lines:
                yield _render(lines, timestamps)
            elif ended or stopped():
                return

    def text(
        self, *, tail: int | None = None, previous: bool = False, timestamps: bool = False,
        since_seconds: float | None = None,
    ) -> str:
        """The log as ``kubectl logs`` prints it (one line per output line, newline-terminated)."""
        with self._lock:
            source = self._previous if previous else self._current
            lines = list(source or ())
        return _render(_select(lines, tail, since_seconds), timestamps)

    def has_previous(self) -> bool:
        with self._lock:
            return self._previous is not None


def _select(lines: list[tuple[float, str]], tail: int | None, since_seconds: float | None) -> list[tuple[float, str]]:
    if since_seconds is not None:
        cutoff = time.time() - since_seconds
        lines = [item for item in lines if item[0] >= cutoff]
    if tail is not None and tail >= 0:
        lines = lines[len(lines) - tail:] if tail else []
    return lines


def _render(lines: list[tuple[float, str]], timestamps: bool) -> str:
    if timestamps:
        return "".join(f"{_stamp(at)} {text}\n" for at, text in lines)
    return "".join(f"{text}\n" for _, text in lines)


def follow_process(
    process: subprocess.Popen[bytes], log: ContainerLog, on_exit: Callable[[int], None], name: str,
) -> threading.Thread:
    """Copy the process's merged stdout/stderr into log; call on_exit(returncode) at EOF."""

    def run(stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            log.append(raw.decode("utf-8", "replace"))
        stream.close()
        code = process.wait()
        log.end()
        on_exit(code)

    assert process.stdout is not None
    thread = threading.Thread(target=run, args=(process.stdout,), name=f"log-{name}", daemon=True)
    thread.start()
    return thread
