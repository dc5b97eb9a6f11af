"""The library's own exceptions.

Every client library's exception (kubernetes ApiException, hvac errors, requests errors,
psycopg errors...) is wrapped into one of these, raised ``from`` the original, so a runbook
and its record only ever see this hierarchy. Messages are short and uncoloured: they land
in the record.

How a run ends is said once, here: each error class names the ``outcome`` it gives a run, and
``EXIT_CODES`` maps an outcome to the exit code of ``runbook run`` (DESIGN.md's). The kernel
(``context``), the runner and the CLI all go through ``outcome_of`` and ``exit_code_for``;
nothing matches on class names.
"""
from __future__ import annotations

__all__ = [
    "EXIT_CODES",
    "outcome_of",
    "exit_code_for",
    "RunbookError",
    "ParameterError",
    "ProfileError",
    "GuardRefused",
    "LockHeld",
    "AwaitingApproval",
    "NotFound",
    "Conflict",
    "NoData",
    "CheckFailed",
    "BackendUnavailable",
    "MaybeApplied",
    "RunbookTimeout",
    "StepSkipped",
]


#: A run's outcome → the exit code of ``runbook run``. "rejected": bad parameters or profile,
#: nothing ran; "refused": a guard said no (wrong cluster, lock held), nothing changed.
EXIT_CODES: dict[str, int] = {
    "succeeded": 0,
    "failed": 1,
    "aborted": 1,
    "promoted": 0,  # a canary's good end (its bad end is "aborted")
    "rejected": 2,
    "awaiting approval": 3,
    "refused": 4,
}


def exit_code_for(outcome: str | None) -> int:
    """The exit code for a run's outcome; an unknown or missing outcome is a failure."""
    return EXIT_CODES.get(outcome or "", EXIT_CODES["failed"])


def outcome_of(error: BaseException) -> str:
    """The outcome of a run that ``error`` ended."""
    if isinstance(error, RunbookError):
        return error.outcome
    if isinstance(error, KeyboardInterrupt):
        return "aborted"
    return "failed"


class RunbookError(Exception):
    """Base of every error the library raises. The run fails (exit 1)."""

    outcome = "failed"
    exit_code = 1

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.exit_code = EXIT_CODES[cls.outcome]  # derived, never set by hand


class ParameterError(RunbookError, ValueError):
    """A parameter is unknown, missing or invalid: the run is rejected, nothing ran (exit 2)."""

    outcome = "rejected"


class ProfileError(ParameterError):
    """An environment profile is missing or invalid: the run is rejected, nothing ran (exit 2)."""


class GuardRefused(RunbookError):
    """A safety guard refused the run before any change: wrong cluster, lock held (exit 4)."""

    outcome = "refused"


class LockHeld(GuardRefused):
    """Another run holds the lock for this environment and service (exit 4)."""


class AwaitingApproval(RunbookError):
    """The run stopped at a step that needs an approval it does not have yet (exit 3)."""

    outcome = "awaiting approval"


class NotFound(RunbookError, LookupError):
    """The object asked for does not exist."""


class Conflict(RunbookError):
    """The object changed under us (stale resourceVersion) or already exists."""


class NoData(RunbookError):
    """A metric query returned no samples. Not a failure by itself: callers decide."""


class CheckFailed(RunbookError):
    """A health, smoke or metric check failed; the message carries the numbers."""


class BackendUnavailable(RunbookError):
    """A backing service (API server, Vault, Prometheus, database) could not be reached."""


class MaybeApplied(BackendUnavailable):
    """A write whose answer was an error that may come after the change landed (500, 502, 504, a
    dropped connection, a timeout): it may or may not have been applied. Read the object back
    before deciding anything (runbooks_lib.platform.rollout.confirmed_write)."""


class RunbookTimeout(RunbookError, TimeoutError):
    """A wait ran past its deadline."""


class StepSkipped(Exception):
    """A step that does not apply to this run (a DR drill's step outside its scenario), and why.

    Raised by a procedure at the start of a step's method; the step is recorded as skipped with
    the reason, and the run goes on. Not a RunbookError: nothing failed."""
