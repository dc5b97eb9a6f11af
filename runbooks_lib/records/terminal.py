"""The ``runbook`` process's own output, filtered as the kernel's is.

``runbook run`` writes from its own process too: the kernel's outputs echoed as they come (masked
in the kernel already), its log lines (papermill's, a lease released, NOT PUBLISHED), the record's
paths, a refused seal's message, a traceback if it breaks. ``filter_process_output`` wraps
``sys.stdout`` and ``sys.stderr`` so that every write passes ``redact`` with the secrets this
process knows (the run's secret parameters, the profile's ``SecretStr`` values) and the token
shapes. Each write is masked on its own: a value split across two writes would pass, which is why
the kernel masks outputs before they are echoed here. Logging handlers and ``warnings`` write to
``sys.stderr`` and are covered when the wrapping comes first, as ``runbook``'s ``main`` does it.
"""
from __future__ import annotations

import sys
from typing import Any, TextIO

from .redaction import redact

__all__ = ["RedactingStream", "filter_process_output"]


class RedactingStream:
    """A text stream that masks secrets in what is written to it; everything else is the stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # encoding, errors, isatty, fileno, flush...: click and logging look at them
        return getattr(self._stream, name)


def filter_process_output() -> None:
    """Mask secrets in everything this process prints to its stdout and stderr (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
