"""The runbook scenarios in two groups, each with a sandbox of its own.

Within a group the scenarios share the sandbox and run in the order listed (each leaves the
platform as the next expects it). The groups share nothing, so `make test` runs them on its
two workers side by side (tests/conftest.py), halving the longest path of the suite.
"""
from __future__ import annotations

# Changes, in order: deploys, rollbacks of what they left, approvals, then a secrets rotation, a
# health check in JupyterLab and a scheduled one (these three only need a platform that serves:
# they are here to balance the groups).
CHANGES = ("test_deploy", "test_rollback", "test_approvals", "test_secrets_rotation", "test_jupyterlab",
           "test_schedule")
# Drills on a platform nobody has changed yet: read-only checks first (a health check must see
# the fresh platform), then a release with migrations (it ends back on the release it found),
# canaries (the last stops and restarts Prometheus), incidents, DR, and deploys under platform
# faults. (The migrations and the fault drills are here to balance the groups.)
DRILLS = ("test_headless", "test_migrations", "test_canary", "test_incident",
          "test_dr", "test_faults")
GROUPS = {"changes": CHANGES, "drills": DRILLS}


def group_of(module: str) -> str:
    """The group of a scenario module (its name without the package, e.g. ``test_deploy``)."""
    for group, modules in GROUPS.items():
        if module in modules:
            return group
    raise KeyError(f"{module} is in no scenario group: add it to tests/runbooks/groups.py")
