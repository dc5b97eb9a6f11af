"""The procedures room: one entry per notebook, the guide's procedures as named steps.

``deploy`` (rolling and blue-green, with its automatic rollback), ``rollback``, ``rotation``
(secrets), ``health``, ``schema_change`` (a release's migrations), ``judging`` (a version judged
on its golden signals; what is known about versions), ``canary``, ``incident``, ``dr``,
``delivery`` (DORA metrics from the records) and ``gameday``. The top room: may import every room
below it; nothing below imports it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# What the notebooks import, each name from the module that defines it, loaded on first use (an
# import of this package stays cheap). A test reads every notebook's imports against this list.
_NOTEBOOK_API = {
    "HealthParams": "health", "HealthCheck": "health",
    "DeployParams": "deploy.release", "DeployRun": "deploy.release", "roll_out_and_verify": "deploy.strategies",
    "RollbackParams": "rollback", "RollbackRun": "rollback",
    "RotationParams": "rotation", "RotationRun": "rotation",
    "CanaryParams": "canary.promote", "CanaryRun": "canary.promote",
    "IncidentParams": "incident.params", "IncidentResponse": "incident.response",
    "DrillParams": "dr.drill", "Drill": "dr.drill",
    "DeliveryParams": "delivery.report", "DeliveryMetrics": "delivery.metrics",
}

__all__ = list(_NOTEBOOK_API)

if TYPE_CHECKING:
    from .canary.promote import CanaryParams, CanaryRun
    from .delivery.metrics import DeliveryMetrics
    from .delivery.report import DeliveryParams
    from .deploy.release import DeployParams, DeployRun
    from .deploy.strategies import roll_out_and_verify
    from .dr.drill import Drill, DrillParams
    from .health import HealthCheck, HealthParams
    from .incident.params import IncidentParams
    from .incident.response import IncidentResponse
    from .rollback import RollbackParams, RollbackRun
    from .rotation import RotationParams, RotationRun


def __getattr__(name: str) -> Any:
    module = _NOTEBOOK_API.get(name)
    if module is None:
        raise AttributeError(f"module 'runbooks_lib.procedures' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
