"""One mapping: error -> outcome -> exit code (DESIGN.md's codes), never by class name."""
from __future__ import annotations

import pytest

from runbooks_lib import errors


@pytest.mark.parametrize(("error", "outcome", "code"), [
    (errors.ParameterError("bad"), "rejected", 2),
    (errors.ProfileError("no such env"), "rejected", 2),
    (errors.GuardRefused("wrong cluster"), "refused", 4),
    (errors.LockHeld("held"), "refused", 4),
    (errors.AwaitingApproval("gate"), "awaiting approval", 3),
    (errors.CheckFailed("5xx"), "failed", 1),
    (errors.RunbookTimeout("slow"), "failed", 1),
    (RuntimeError("any other"), "failed", 1),
    (KeyboardInterrupt(), "aborted", 1),
])
def test_each_error_gives_its_outcome_and_exit_code(error: BaseException, outcome: str, code: int) -> None:
    assert errors.outcome_of(error) == outcome
    assert errors.exit_code_for(outcome) == code
    if isinstance(error, errors.RunbookError):
        assert error.exit_code == code


def test_a_new_error_class_takes_its_exit_code_from_its_outcome() -> None:
    class Renamed(errors.GuardRefused):  # a subclass with any name is still a refusal
        pass

    assert Renamed.exit_code == 4 and errors.outcome_of(Renamed("x")) == "refused"
    assert errors.exit_code_for("succeeded") == 0 and errors.exit_code_for(None) == 1
    assert errors.exit_code_for("no such outcome") == 1
