"""The library's own exceptions.

Every client library's exception (kubernetes ApiException, hvac errors, requests errors,
psycopg errors...) is wrapped into one of these, raised ``from`` the original, so a runbook
and its record only ever see this hierarchy. Messages are short and uncoloured: they land
in the record. ``exit_code`` is what ``runbook run`` returns when the error ends a run.
"""
from __future__ import annotations

__all__ = [
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
    "RunbookTimeout",
]


class RunbookError(Exception):
    """Base of every error the library raises. The run fails (exit 1)."""

    exit_code = 1


class ParameterError(RunbookError, ValueError):
    """A parameter is unknown, missing or invalid. Nothing was changed (exit 2)."""

    exit_code = 2


class ProfileError(ParameterError):
    """An environment profile is missing or invalid. Nothing was changed (exit 2)."""


class GuardRefused(RunbookError):
    """A safety guard refused the run before any change: wrong cluster, lock held (exit 4)."""

    exit_code = 4


class LockHeld(GuardRefused):
    """Another run holds the lock for this environment and service (exit 4)."""


class AwaitingApproval(RunbookError):
    """The run stopped at a step that needs an approval it does not have yet (exit 3)."""

    exit_code = 3


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


class RunbookTimeout(RunbookError, TimeoutError):
    """A wait ran past its deadline."""
