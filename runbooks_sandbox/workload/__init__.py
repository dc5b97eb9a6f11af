"""The simulated Veza service that runs in every sandbox pod, its image catalog and its faults.

The pod runtime resolves a pod's image with :func:`load_image_catalog` (an unknown tag raises
:class:`ImagePullError`) and starts ``python -m runbooks_sandbox.workload --image ... --host ...
--port ... --fault-file ...``; the orchestrator drives incident drills with
:func:`inject_fault` / :func:`clear_fault` on that fault file.
"""
from typing import Any

from .faults import Fault, clear_fault, inject_fault, read_fault
from .launch import WorkloadProcess, start_workload, workload_command
from .routes import API_ROUTES, routes_for

__all__ = [
    "API_ROUTES",
    "CatalogError",
    "Fault",
    "ImageBehaviour",
    "ImageCatalog",
    "ImagePullError",
    "ResolvedImage",
    "WorkloadProcess",
    "clear_fault",
    "inject_fault",
    "load_image_catalog",
    "read_fault",
    "routes_for",
    "start_workload",
    "workload_command",
]

_FROM_CATALOG = ("CatalogError", "ImageBehaviour", "ImageCatalog", "ImagePullError", "ResolvedImage",
                 "load_image_catalog")


def __getattr__(name: str) -> Any:
    # The catalog (pydantic, YAML) is loaded only by those who resolve images, not by every pod
    # process: `python -m runbooks_sandbox.workload` imports this package first.
    if name in _FROM_CATALOG:
        from . import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
