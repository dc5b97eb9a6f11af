"""runbooks_lib: what Veza runbooks call, in production as in the sandbox.

Notebooks import from here only. Names are loaded on first use so that ``import runbooks_lib``
stays cheap (no kubernetes, pandas or matplotlib until a runbook needs them); ``__all__`` is
the public surface and a test pins it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AwaitingApproval,
    BackendUnavailable,
    CheckFailed,
    Conflict,
    GuardRefused,
    LockHeld,
    NoData,
    NotFound,
    ParameterError,
    ProfileError,
    RunbookError,
    RunbookTimeout,
)

from .config.version import __version__

# name -> module that defines it, imported lazily on first attribute access.
_LAZY = {
    "start": "run.context",
    "RunContext": "run.context",
    "SUMMARY_MIME": "records.summary",
    "Profile": "config.profiles",
    "load_profile": "config.profiles",
    "check_cluster_identity": "run.cluster_identity",
    "run_notebook": "run.runner",
    "read_summary": "records.summary",
    "SecretValue": "records.secret",
    "register_secret": "records.redaction",
    "summaries": "records.catalog",
}

__all__ = [
    "AwaitingApproval",
    "BackendUnavailable",
    "CheckFailed",
    "Conflict",
    "GuardRefused",
    "LockHeld",
    "NoData",
    "NotFound",
    "ParameterError",
    "ProfileError",
    "RunbookError",
    "RunbookTimeout",
    *_LAZY,
]

if TYPE_CHECKING:
    from .run.context import RunContext, start
    from .run.cluster_identity import check_cluster_identity
    from .config.profiles import Profile, load_profile
    from .records.catalog import summaries
    from .records.redaction import register_secret
    from .records.secret import SecretValue
    from .records.summary import SUMMARY_MIME, read_summary
    from .run.runner import run_notebook


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runbooks_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
