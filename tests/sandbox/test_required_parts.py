"""The sandbox fails loudly when a part is missing, instead of quietly faking it (issue 10 item 8)."""
from __future__ import annotations

import pytest

from runbooks_sandbox.apiserver import default_controllers
from runbooks_sandbox.models.controllers import start_controllers
from runbooks_sandbox.supervisor import _required


def test_a_missing_part_stops_the_sandbox_with_a_message_naming_it() -> None:
    with pytest.raises(RuntimeError, match=r"cannot run pods as processes: runbooks_sandbox\.runtime\.gone\.X"):
        _required("runbooks_sandbox.runtime.gone", "X", "run pods as processes")
    with pytest.raises(RuntimeError, match="Nope does not load"):
        _required("runbooks_sandbox.runtime.pods", "Nope", "run pods as processes")


def test_the_parts_that_exist_are_the_real_ones() -> None:
    assert _required("runbooks_sandbox.runtime.pods", "ProcessRuntime", "run pods").__name__ == "ProcessRuntime"
    assert default_controllers() is start_controllers  # never None: no silent "no controllers"
