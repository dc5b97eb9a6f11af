"""A container's log as the node agent keeps it: a follow ends when its reader leaves or the instance restarts.

``kubectl logs -f`` and ``--previous`` through the API server are in test_node_agent.py.
"""
from __future__ import annotations

import threading

import pytest

from runbooks_sandbox.runtime.logs import ContainerLog


def test_a_follow_ends_when_its_reader_leaves() -> None:
    log = ContainerLog()
    log.append("one")
    left = threading.Event()
    chunks = log.follow(stopped=left.is_set, tick_s=0.02)
    assert next(chunks) == "one\n"
    log.append("two")
    assert next(chunks) == "two\n"
    left.set()
    with pytest.raises(StopIteration):
        next(chunks)
    log.new_instance()  # a restart ends a follow of the earlier instance too
    chunks = log.follow()
    next(chunks)
    log.new_instance()
    with pytest.raises(StopIteration):
        next(chunks)
